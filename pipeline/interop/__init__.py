"""Other DFER code's data layouts: our shards exported as frame folders with DFER-CLIP annotation
lists (`export`), and such lists read back as a manifest (`annotation_lists`, used by
`python -m pipeline.preprocess --import-list`)."""
