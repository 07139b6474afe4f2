"""The real-footage set's ground truth and the measures taken against it (tools/real_footage.py builds the set)."""
