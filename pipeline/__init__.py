"""Offline preprocessing: face videos in, WebDataset shards of crops, landmarks, masks and descriptions out."""
