"""Shard-streaming trainer for CLIP-based dynamic facial expression recognition (FineCLIPER, DFER-CLIP)."""
