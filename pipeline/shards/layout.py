"""The layouts the shards' arrays follow: the iBUG 300-W 68 landmarks (named point groups, the
mirror permutation, face geometry, source pixels into a stored crop's) and CelebAMask-HQ's 19
face-parsing labels with their colours.

Indices are 0-based. "Right" and "left" are the subject's: the subject's right eye
(36–41) appears on the image's left in an unmirrored frame.
"""

from __future__ import annotations

import numpy as np

JAW = tuple(range(0, 17))
RIGHT_BROW = tuple(range(17, 22))
LEFT_BROW = tuple(range(22, 27))
NOSE_BRIDGE = tuple(range(27, 31))
NOSE_BASE = tuple(range(31, 36))
RIGHT_EYE = tuple(range(36, 42))
LEFT_EYE = tuple(range(42, 48))
OUTER_LIPS = tuple(range(48, 60))
INNER_LIPS = tuple(range(60, 68))
UPPER_LIP = (48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60)  # outline, clockwise in the image
LOWER_LIP = (48, 60, 67, 66, 65, 64, 54, 55, 56, 57, 58, 59)

# Index i of a horizontally mirrored face is point MIRROR[i] of the original: mirroring an
# image and its landmarks is `flipped = landmarks[MIRROR]` with x -> width - 1 - x.
MIRROR = np.array(
    list(range(16, -1, -1))                      # jaw
    + list(range(26, 16, -1))                    # brows
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]    # nose
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]     # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65],                    # inner lips
    dtype=np.int64)


def mirror_landmarks(points: np.ndarray, width: int) -> np.ndarray:
    """Landmarks (..., 68, 2) of the image mirrored left-right, re-indexed to stay iBUG-ordered."""
    out = points[..., MIRROR, :].copy()
    out[..., 0] = (width - 1) - out[..., 0]
    return out


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(subject's right eye centre, left eye centre), each (..., 2)."""
    return points[..., RIGHT_EYE, :].mean(axis=-2), points[..., LEFT_EYE, :].mean(axis=-2)


def interocular_distance(points: np.ndarray) -> np.ndarray:
    """Distance between the eye centres, the usual normaliser for landmark error."""
    right, left = eye_centres(points)
    return np.linalg.norm(left - right, axis=-1)


def source_to_crop(points: np.ndarray, boxes: np.ndarray, crop_size: int) -> np.ndarray:
    """Points (T, K, 2) in source-frame pixels -> the stored crops' pixels, through each frame's crop
    square `boxes` (T, 4: x0, y0, x1, y1 in source pixels, as a shard records them) and the crop's side."""
    x0, y0, x1, y1 = np.asarray(boxes, np.float64).T
    scale = (crop_size / (x1 - x0))[:, None, None]
    return (points - np.stack([x0, y0], 1)[:, None, :]) * scale


def face_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit axes of the face (x from the subject's right eye to the left, y down the face) and the IOD."""
    right, left = eye_centres(points)
    x_axis = left - right
    iod = float(np.linalg.norm(x_axis))
    x_axis = x_axis / iod
    y_axis = np.array([-x_axis[1], x_axis[0]])
    return x_axis, y_axis, iod


# CelebAMask-HQ's 19 face-parsing labels (the order facexlib's BiSeNet predicts). "l_"/"r_" are
# the subject's left/right; the subject's left eye (iBUG 42-47) is on the image's right.
PARSING_LABELS = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
                  "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
# One RGB colour per label, for colour-coded masks (the trainer's mask branch and contact sheets).
PARSING_PALETTE = np.array([
    [0, 0, 0], [204, 0, 0], [76, 153, 0], [204, 204, 0], [51, 51, 255], [204, 0, 204], [0, 255, 255],
    [255, 204, 204], [102, 51, 0], [255, 0, 0], [102, 204, 0], [255, 255, 0], [0, 0, 153], [0, 0, 204],
    [255, 51, 153], [0, 204, 204], [0, 51, 0], [255, 153, 51], [0, 204, 0]], np.uint8)
