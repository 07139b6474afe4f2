"""Ground truth of the real-footage set and the measures taken against it.

`tools/real_footage.py` writes one `truth/<clip_id>.npz` per clip of `data/real`: per frame of the
clip as the pipeline's decoder gives it, its timestamp, whether a face is visible, the 68 hand-
annotated points (photograph clips; NaN elsewhere), where the clip's subject is (`main_region`)
and the camera move of built clips; and how many people the clip shows. A shard stores a subset of
those frames (subsampled, trimmed), matched here by timestamp.

Landmark error on real faces is the NME with the distance between the outer eye corners (points 36
and 45) as normaliser, the convention of the 300-W benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class ClipTruth:
    clip_id: str
    timestamps: np.ndarray    # (N,) seconds, as decode_clip gives them
    face_visible: np.ndarray  # (N,) bool
    landmarks: np.ndarray     # (N, 68, 2) frame pixels, NaN where not annotated
    main_region: np.ndarray   # (N, 4) x0, y0, x1, y1 of the subject, NaN where not set
    camera: np.ndarray        # (N, 2, 3) photograph -> frame pixels for built clips, NaN otherwise
    people: int               # people the clip shows

    @property
    def annotated(self) -> bool:
        return bool(np.isfinite(self.landmarks).all(axis=(1, 2)).any())


def load_truth(root: str | Path, clip_id: str) -> ClipTruth:
    path = Path(root) / "truth" / f"{clip_id}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ground truth for {clip_id} (run `make real-footage`)")
    with np.load(path) as z:
        return ClipTruth(clip_id=clip_id, timestamps=z["timestamps"], face_visible=z["face_visible"].astype(bool),
                         landmarks=z["landmarks"], main_region=z["main_region"], camera=z["camera"],
                         people=int(z["people"]))


def match_frames(truth: ClipTruth, timestamps: np.ndarray) -> np.ndarray:
    """Index into the truth's frames of each stored frame, by timestamp (they come from one decoder)."""
    timestamps = np.asarray(timestamps, np.float64)
    index = np.clip(np.searchsorted(truth.timestamps, timestamps), 0, len(truth.timestamps) - 1)
    before = np.clip(index - 1, 0, None)
    closer = np.abs(truth.timestamps[before] - timestamps) < np.abs(truth.timestamps[index] - timestamps)
    index = np.where(closer, before, index)
    step = np.median(np.diff(truth.timestamps)) if len(truth.timestamps) > 1 else 1.0
    if len(timestamps) and np.abs(truth.timestamps[index] - timestamps).max() > step / 2:
        raise ValueError(f"{truth.clip_id}: stored timestamps do not match the truth's frames")
    return index


def outer_corner_nme(landmarks: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-frame NME (T,) of landmarks against truth (T, 68, 2, same pixels): the mean point distance
    over the distance between the outer eye corners (points 36 and 45) of the truth."""
    normaliser = np.linalg.norm(truth[:, 45] - truth[:, 36], axis=1)
    return np.linalg.norm(landmarks - truth, axis=2).mean(1) / normaliser


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for telling `positive` from the rest (ties count half):
    the chance that a random positive scores above a random negative."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        raise ValueError("ROC AUC needs both positives and negatives")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    # average ranks over ties
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or values[end] != values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
