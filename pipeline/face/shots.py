"""Where a clip cuts from one shot to another, from the brightness of every frame.

A cut changes most of the picture at once; motion within a shot changes little of it between two
frames. Each frame's luma is reduced to a 32×18 thumbnail (every k-th pixel, then area
averaging, about 0.1 ms a frame) and a cut is declared where the mean absolute difference of two
consecutive thumbnails exceeds `CUT_DIFFERENCE` grey levels: on the real-footage set the cuts
change far more than that and motion within a shot (a camera pan included) far less
(docs/real-footage.md, `shots` in bench/results/real_footage.json).

The face stage uses shots to confirm faces: a frame counts as a face frame only in a shot where
the detector found the clip's subject (pipeline/face/face_frames.py).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

CUT_DIFFERENCE = 25.0   # grey levels (0–255) of mean absolute thumbnail difference
THUMBNAIL = (32, 18)    # width, height


def thumbnails(frames: Sequence[np.ndarray]) -> np.ndarray:
    """(T, 18, 32) float32 thumbnails of grey (H×W) or RGB (H×W×3) frames."""
    out = []
    for frame in frames:
        step = max(1, min(frame.shape[:2]) // (4 * THUMBNAIL[1]))
        small = np.ascontiguousarray(frame[::step, ::step])
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        out.append(cv2.resize(small, THUMBNAIL, interpolation=cv2.INTER_AREA))
    return np.stack(out).astype(np.float32) if out else np.zeros((0, THUMBNAIL[1], THUMBNAIL[0]), np.float32)


def shot_index(frames: Sequence[np.ndarray], cut_difference: float = CUT_DIFFERENCE) -> np.ndarray:
    """(T,) int: the shot each frame belongs to, 0 for the first, +1 at every cut."""
    thumbs = thumbnails(frames)
    if len(thumbs) < 2:
        return np.zeros(len(thumbs), np.int64)
    change = np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2))
    return np.concatenate([[0], np.cumsum(change > cut_difference)]).astype(np.int64)
