"""The generated sample dataset: a real face animated into the seven basic expressions."""
