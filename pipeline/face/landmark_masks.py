"""FaceParser for the offline profile: CelebAMask-HQ label maps rasterised from the 68 landmarks.

No network guesses here: each region is a polygon of landmark points, drawn back to front —
skin (the jaw line closed by a forehead arc above the brows), nose, brows (the brow line
thickened), eyes, upper and lower lip, and the inner mouth. Hair, ears, neck and the rest
stay background: the landmarks do not locate them.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.shards.layout import (PARSING_LABELS, INNER_LIPS, LEFT_BROW, LEFT_EYE, LOWER_LIP, NOSE_BASE, NOSE_BRIDGE,
                                      RIGHT_BROW, RIGHT_EYE, UPPER_LIP, face_frame)

LABEL = {name: index for index, name in enumerate(PARSING_LABELS)}
_SHIFT = 4  # sub-pixel precision of the polygon vertices (1/16 px)


def _poly(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << _SHIFT)).astype(np.int32)


def rasterise(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """H×W uint8 parsing labels for one face whose 68 landmarks are `points` (x, y in pixels)."""
    height, width = size
    labels = np.zeros((height, width), np.uint8)
    if not np.isfinite(points).all():
        return labels
    _, up, iod = face_frame(points)
    up = -up  # face_frame's y axis points down the face
    brows = points[list(RIGHT_BROW + LEFT_BROW)]
    forehead = brows + 0.45 * iod * up
    skin = np.concatenate([points[:17], forehead[::-1]])
    cv2.fillPoly(labels, [_poly(skin)], LABEL["skin"], cv2.LINE_8, _SHIFT)

    nose = points[list(NOSE_BRIDGE + NOSE_BASE)]
    cv2.fillPoly(labels, [_poly(cv2.convexHull(nose.astype(np.float32))[:, 0])], LABEL["nose"], cv2.LINE_8, _SHIFT)

    thickness = max(1, int(round(0.1 * iod)))
    for group, name in ((RIGHT_BROW, "r_brow"), (LEFT_BROW, "l_brow")):
        line = _poly(points[list(group)])
        cv2.polylines(labels, [line], False, LABEL[name], thickness, cv2.LINE_8, _SHIFT)
    for group, name in ((RIGHT_EYE, "r_eye"), (LEFT_EYE, "l_eye")):
        cv2.fillPoly(labels, [_poly(points[list(group)])], LABEL[name], cv2.LINE_8, _SHIFT)
    for group, name in ((UPPER_LIP, "u_lip"), (LOWER_LIP, "l_lip"), (INNER_LIPS, "mouth")):
        cv2.fillPoly(labels, [_poly(points[list(group)])], LABEL[name], cv2.LINE_8, _SHIFT)
    return labels


class LandmarkMaskParser:
    """FaceParser protocol: masks from landmarks (the `cpu` profile's parser)."""

    name = "landmarks"

    def identity(self) -> dict:
        return {"backend": "landmarks", "version": 1,
                "regions": ["skin", "nose", "r_brow", "l_brow", "r_eye", "l_eye", "u_lip", "l_lip", "mouth"]}

    def parse(self, crops: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        size = crops.shape[1:3]
        return np.stack([rasterise(points, size) for points in landmarks])
