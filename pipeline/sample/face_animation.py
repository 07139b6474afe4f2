"""Animate a still face into an expression: action units move landmarks, a mesh warp moves pixels.

Each action unit (AU, after the Facial Action Coding System) is a set of landmark
displacements in the face's own frame (x from the subject's right eye to the left eye,
y down the face), in units of the inter-ocular distance (IOD), so they fit any face
photo. An expression is a weighted sum of AUs; its intensity follows an envelope over
time (neutral → onset → apex → optional offset). `FaceWarper` renders a frame by a
piecewise-affine warp of the photo from its neutral landmarks to the displaced ones
(Delaunay mesh over the landmarks plus a fixed ring around the head), composed with a
similarity transform for head motion, and paints the inner mouth dark when the jaw opens.
The displaced landmarks are exact ground truth for the rendered frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from pipeline.shards.layout import INNER_LIPS, face_frame

# AU -> {landmark index: (dx, dy)} in IOD units; "right"/"left" are the subject's sides,
# written for the subject's right half and mirrored (dx negated) onto the left by _symmetric.
_HALF_AUS: dict[str, dict[int, tuple[float, float]]] = {
    "AU1_inner_brow_raise": {21: (0.0, -0.13), 20: (0.0, -0.09), 19: (0.0, -0.04)},
    "AU2_outer_brow_raise": {17: (0.0, -0.10), 18: (0.0, -0.12), 19: (0.0, -0.10), 20: (0.0, -0.05)},
    "AU4_brow_lower": {17: (0.0, 0.03), 18: (0.01, 0.05), 19: (0.02, 0.07), 20: (0.04, 0.08), 21: (0.06, 0.08),
                       37: (0.0, 0.015), 38: (0.0, 0.015)},
    "AU5_upper_lid_raise": {37: (0.0, -0.045), 38: (0.0, -0.045), 36: (0.0, -0.01), 39: (0.0, -0.01)},
    "AU6_cheek_raise": {40: (0.0, -0.03), 41: (0.0, -0.03), 1: (0.0, -0.03), 2: (0.01, -0.04), 3: (0.01, -0.03)},
    "AU7_lid_tighten": {40: (0.0, -0.035), 41: (0.0, -0.035), 37: (0.0, 0.02), 38: (0.0, 0.02)},
    "AU9_nose_wrinkle": {31: (0.01, -0.06), 32: (0.0, -0.05), 29: (0.0, -0.02), 30: (0.0, -0.03),
                         21: (0.02, 0.04), 20: (0.0, 0.02), 39: (0.0, -0.01)},
    "AU10_upper_lip_raise": {50: (0.0, -0.08), 49: (0.0, -0.06), 51: (0.0, -0.07), 61: (0.0, -0.07),
                             62: (0.0, -0.07), 48: (0.0, -0.02), 60: (0.0, -0.03)},
    "AU12_lip_corner_pull": {48: (-0.10, -0.09), 60: (-0.08, -0.07), 49: (-0.03, -0.04), 59: (-0.04, -0.05),
                             61: (-0.02, -0.02), 67: (-0.03, -0.03), 4: (0.0, -0.02), 5: (0.0, -0.01)},
    "AU15_lip_corner_depress": {48: (0.0, 0.08), 60: (0.0, 0.06), 59: (0.0, 0.03), 49: (0.0, 0.03),
                                67: (0.0, 0.02)},
    "AU20_lip_stretch": {48: (-0.10, 0.02), 60: (-0.09, 0.02), 49: (-0.04, 0.01), 59: (-0.05, 0.02),
                         61: (-0.03, 0.0), 67: (-0.04, 0.01)},
    "AU24_lip_press": {50: (0.0, 0.025), 49: (0.0, 0.02), 51: (0.0, 0.025), 58: (0.0, -0.03), 57: (0.0, -0.035),
                       59: (0.0, -0.02), 48: (0.02, 0.0), 60: (0.01, 0.0)},
    "AU26_jaw_drop": {57: (0.0, 0.30), 58: (0.0, 0.28), 59: (0.0, 0.20), 66: (0.0, 0.28), 67: (0.0, 0.24),
                      8: (0.0, 0.30), 7: (0.0, 0.27), 6: (0.0, 0.22), 5: (0.0, 0.15), 4: (0.0, 0.08),
                      3: (0.0, 0.03)},
    "AU45_blink": {37: (0.0, 0.11), 38: (0.0, 0.11), 36: (0.0, 0.01), 39: (0.0, 0.01)},
}
# Indices of the subject's right half and their mirror on the left (points on the midline map to themselves).
_TO_LEFT = {**{i: 16 - i for i in range(0, 8)}, 8: 8, **{17 + k: 26 - k for k in range(5)},
            27: 27, 28: 28, 29: 29, 30: 30, 31: 35, 32: 34, 33: 33,
            36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46,
            48: 54, 49: 53, 50: 52, 51: 51, 57: 57, 58: 56, 59: 55, 60: 64, 61: 63, 62: 62, 66: 66, 67: 65}


def _symmetric(half: dict[int, tuple[float, float]]) -> np.ndarray:
    """68×2 displacement field from the right-half definition, mirrored onto the left half."""
    field = np.zeros((68, 2))
    for index, (dx, dy) in half.items():
        field[index] = (dx, dy)
        mirror = _TO_LEFT[index]
        if mirror != index:
            field[mirror] = (-dx, dy)
    return field


ACTION_UNITS: dict[str, np.ndarray] = {name: _symmetric(half) for name, half in _HALF_AUS.items()}

# Each class as AU weights (FACS-based prototypes; see docs/sample-dataset.md).
EXPRESSIONS: dict[str, dict[str, float]] = {
    "happiness": {"AU6_cheek_raise": 1.0, "AU12_lip_corner_pull": 1.3},
    "sadness": {"AU1_inner_brow_raise": 1.0, "AU4_brow_lower": 0.6, "AU15_lip_corner_depress": 1.0},
    "surprise": {"AU1_inner_brow_raise": 1.0, "AU2_outer_brow_raise": 1.0, "AU5_upper_lid_raise": 1.0,
                 "AU26_jaw_drop": 1.0},
    "fear": {"AU1_inner_brow_raise": 1.0, "AU2_outer_brow_raise": 0.6, "AU4_brow_lower": 0.5,
             "AU5_upper_lid_raise": 1.0, "AU20_lip_stretch": 1.0, "AU26_jaw_drop": 0.5},
    "anger": {"AU4_brow_lower": 1.2, "AU7_lid_tighten": 1.0, "AU24_lip_press": 1.0},
    "disgust": {"AU9_nose_wrinkle": 1.0, "AU10_upper_lip_raise": 1.0, "AU15_lip_corner_depress": 0.6},
    "neutral": {},
}


def expression_field(weights: dict[str, float]) -> np.ndarray:
    """68×2 displacement (IOD units, face frame) of an expression at full intensity."""
    field = np.zeros((68, 2))
    for name, weight in weights.items():
        field += weight * ACTION_UNITS[name]
    return field


def to_image_offsets(field: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """Face-frame IOD-unit displacements -> pixel offsets for the face with landmarks `neutral`."""
    x_axis, y_axis, iod = face_frame(neutral)
    return iod * (field[:, :1] * x_axis + field[:, 1:] * y_axis)


def relaxed_rest_pose(photo_points: np.ndarray, relax_smile: float) -> np.ndarray:
    """Landmarks of a calmer face than the photo's: its smile undone by `relax_smile` × AU12 and
    parted lips brought together. Portraits smile; the sample's neutral should not."""
    rest = photo_points + to_image_offsets(-relax_smile * ACTION_UNITS["AU12_lip_corner_pull"], photo_points)
    for upper, lower, closure in ((61, 67, 0.9), (62, 66, 0.9), (63, 65, 0.9), (50, 58, 0.25), (51, 57, 0.25),
                                  (52, 56, 0.25)):
        shift = (rest[lower] - rest[upper]) / 2 * closure
        rest[upper] += shift
        rest[lower] -= shift
    return rest


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def blink_curve(n_frames: int, starts) -> np.ndarray:
    """AU45 weight per frame for blinks beginning at `starts`: 0.5, 1, 1, 0.5 over four frames each."""
    blink = np.zeros(n_frames)
    for start in starts:
        for k, v in enumerate((0.5, 1.0, 1.0, 0.5)):
            if start + k < n_frames:
                blink[start + k] = max(blink[start + k], v)
    return blink


def envelope(n_frames: int, onset: int, apex: int, offset: int | None, release: float) -> np.ndarray:
    """Intensity per frame in [0, 1]: 0 until `onset`, rising to 1 at `apex`, then (from `offset`)
    falling to `1 - release` by the end."""
    t = np.arange(n_frames, dtype=np.float64)
    curve = smoothstep((t - onset) / max(apex - onset, 1))
    if offset is not None:
        curve = curve - release * smoothstep((t - offset) / max(n_frames - 1 - offset, 1))
    return curve


@dataclass(frozen=True)
class HeadPose:
    """Similarity transform from photo pixels to output pixels: scale, roll (degrees), shift."""

    scale: float
    roll_deg: float
    centre: tuple[float, float]   # photo point that lands at `target`
    target: tuple[float, float]

    def matrix(self) -> np.ndarray:
        m = cv2.getRotationMatrix2D(self.centre, self.roll_deg, self.scale)
        m[:, 2] += np.asarray(self.target) - np.asarray(self.centre)
        return m


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


class FaceWarper:
    """Render frames of one photo with displaced landmarks under a head pose."""

    def __init__(self, photo: np.ndarray, neutral: np.ndarray):
        self.photo = photo
        self.neutral = neutral.astype(np.float64)
        h, w = photo.shape[:2]
        centre = self.neutral.mean(axis=0)
        span = np.ptp(self.neutral, axis=0).max()
        # A ring around the head anchors the mesh: pixels beyond it move rigidly with the head.
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        ring = centre + 1.1 * span * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)
        self.anchors = np.concatenate([ring, corners])
        self.triangles = Delaunay(np.concatenate([self.neutral, self.anchors])).simplices

    def render(self, landmarks: np.ndarray, pose: HeadPose, size: tuple[int, int],
               mouth_open: float) -> tuple[np.ndarray, np.ndarray]:
        """Frame (H×W×3 uint8) and its 68 landmarks in output pixels, for photo-space `landmarks`."""
        width, height = size
        m = pose.matrix()
        src = np.concatenate([self.neutral, self.anchors])
        dst = apply_affine(m, np.concatenate([landmarks, self.anchors]))
        # Each output pixel gets the id of the mesh triangle covering it (-1: outside, rigid).
        ids = np.full((height, width), -1, np.int32)
        inverse = np.zeros((len(self.triangles) + 1, 2, 3))
        inverse[-1] = cv2.invertAffineTransform(m)
        for k, tri in enumerate(self.triangles):
            d = dst[tri].astype(np.float32)
            area = (d[1, 0] - d[0, 0]) * (d[2, 1] - d[0, 1]) - (d[2, 0] - d[0, 0]) * (d[1, 1] - d[0, 1])
            if abs(area) < 1e-3:
                inverse[k] = inverse[-1]
                continue
            inverse[k] = cv2.getAffineTransform(d, src[tri].astype(np.float32))
            cv2.fillConvexPoly(ids, np.round(d * 16).astype(np.int32), k, lineType=cv2.LINE_8, shift=4)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        a = inverse[ids].astype(np.float32)  # ids == -1 picks the rigid inverse in the last row
        map_x = a[..., 0, 0] * xs + a[..., 0, 1] * ys + a[..., 0, 2]
        map_y = a[..., 1, 0] * xs + a[..., 1, 1] * ys + a[..., 1, 2]
        frame = cv2.remap(self.photo, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        out_points = dst[:68]
        if mouth_open > 0.02:
            self._paint_mouth(frame, out_points, min(1.0, mouth_open * 4))
        return frame, out_points

    @staticmethod
    def _paint_mouth(frame: np.ndarray, points: np.ndarray, strength: float) -> None:
        """Darken the inner-lip polygon: the open mouth's cavity, which the photo does not have."""
        mask = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(points[list(INNER_LIPS)] * 16).astype(np.int32)], 255,
                     lineType=cv2.LINE_AA, shift=4)
        mask = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32)[..., None] / 255.0 * strength
        cavity = np.array([55, 22, 25], np.float32)
        frame[:] = (frame * (1 - mask) + cavity * mask).astype(np.uint8)
