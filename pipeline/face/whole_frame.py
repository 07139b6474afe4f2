"""`--crop official`: the dataset's own face crops used as they are — the whole frame is the crop.

No detector runs and nothing is cut away: each frame is resized to crop_size × crop_size as
a whole (a plain resize, so a frame that is not square is stretched to a square), and not at
all when it already has that size. The crop box recorded for it is the whole frame, in the
shard's pixel convention (pixel centres at integers, docs/shard-format.md): cv2.resize maps crop
pixel u to frame point (u + 0.5)·W/S − 0.5, so x0 = 0.5·W/S − 0.5 and x1 = x0 + W — exactly
(0, 0, W, H) when the frame is already S × S.
"""

from __future__ import annotations

import cv2
import numpy as np


def whole_frame_boxes(num_frames: int, width: int, height: int, size: int) -> np.ndarray:
    """(T, 4) crop boxes (x0, y0, x1, y1) in frame pixels covering each W×H frame resized to size²."""
    x0, y0 = 0.5 * width / size - 0.5, 0.5 * height / size - 0.5
    return np.tile([x0, y0, x0 + width, y0 + height], (num_frames, 1)).astype(np.float64)


def whole_frame_crops(frames: np.ndarray, size: int) -> np.ndarray:
    """T×H×W×3 frames -> T×size×size×3: unchanged when already that size, else each resized whole
    (area averaging when shrinking, bilinear when enlarging)."""
    height, width = frames.shape[1:3]
    if (height, width) == (size, size):
        return frames
    shrink = width * height > size * size
    flags = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.stack([cv2.resize(frame, (size, size), interpolation=flags) for frame in frames])


def whole_frame_face_box(num_frames: int, size: int) -> np.ndarray:
    """(T, 4) the face box handed to the landmark model, in crop pixels: the whole crop."""
    return np.tile([0.0, 0.0, float(size), float(size)], (num_frames, 1))
