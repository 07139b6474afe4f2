"""face-alignment's FAN (2DFAN4): 68-point landmarks for the `full` profile.

Reproduces `face_alignment.FaceAlignment.get_landmarks_from_image` for faces whose boxes we
already have (center, scale and the 256×256 crop computed from a box the way the library does),
batched over many crops, without test-time flipping and without torch.compile. One
difference: the library truncates the points to whole pixels when mapping them back from the
heatmap; we keep the quarter-pixel refined positions as floats.

Not `FaceAlignment` itself: it takes no weight file (it downloads FAN by URL, bypassing
WEIGHTS_DIR and the offline message of pipeline/weights.py) and runs FAN one image at a time,
where our one-face crops go through in batches; the library's FAN, crop and decoder are used.

Confidence of a face: the mean over the 68 points of the heatmap peak (FAN is trained to put
a Gaussian of height 1 at each point, so a peak near 1 is a confident point).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import torch

from pipeline.shards.files import file_sha256
from pipeline.weights import FAN_2D, load_state_dict, resolve_weight

HEATMAP_SIZE = 64


def centers_and_scales(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """face-alignment's crop center and scale for face boxes (x0, y0, x1, y1), as in get_landmarks_from_image."""
    from face_alignment.utils import CENTER_Y_OFFSET, REFERENCE_SCALE

    boxes = np.asarray(boxes, np.float64)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    # As the library does: the crop center sits 12% of the box height above the box center.
    centers = np.stack([boxes[:, 2] - width / 2, boxes[:, 3] - height / 2 - height * CENTER_Y_OFFSET], axis=1)
    scales = (width + height) / REFERENCE_SCALE
    return centers, scales


def heatmap_to_image(points: np.ndarray, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Heatmap coordinates (N×68×2) to image pixels: the inverse of face_alignment.utils.transform, in floats."""
    from face_alignment.utils import SCALE_FACTOR

    side = (SCALE_FACTOR * scales)[:, None, None]  # the square the crop covers, in image pixels
    return points * side / HEATMAP_SIZE + centers[:, None, :] - side / 2


class FanLandmarks:
    """LandmarkModel backend: FAN on face crops, given each crop's face box."""

    name = "fan"

    def __init__(self, device: str | None = None, weights_dir=None, batch_size: int = 32):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.weights_dir = weights_dir
        self.batch_size = batch_size

    @cached_property
    def weights_path(self):
        return resolve_weight(FAN_2D, self.weights_dir)

    @cached_property
    def net(self) -> torch.nn.Module:
        from face_alignment.models import FAN

        net = FAN(4)
        state = load_state_dict(self.weights_path, "2DFAN4")
        try:
            net.load_state_dict(state)
        except RuntimeError as error:
            raise RuntimeError(f"{self.weights_path} is not a 2DFAN4 state dict: {error}") from error
        return net.to(self.device).eval()

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "model": "2DFAN4", "weights": FAN_2D.name,
                "sha256": file_sha256(self.weights_path), "flip_input": False}

    def predict(self, crops: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from face_alignment.utils import crop, get_preds_fromhm

        crops, boxes = np.asarray(crops), np.asarray(boxes, np.float64)
        if len(crops) == 0:
            return np.zeros((0, 68, 2), np.float32), np.zeros(0, np.float32)
        if crops.ndim != 4 or crops.shape[-1] != 3 or boxes.shape != (len(crops), 4):
            raise ValueError(f"expected crops N×S×S×3 and boxes N×4, got {crops.shape} and {boxes.shape}")
        size = (boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1])
        if not (np.isfinite(boxes).all() and (size > 0).all()):
            bad = np.flatnonzero(~(np.isfinite(size) & (size > 0)))
            raise ValueError(f"face boxes {bad.tolist()} are empty or not finite: {boxes[bad].tolist()}")

        centers, scales = centers_and_scales(boxes)
        points = np.empty((len(crops), 68, 2), np.float32)
        confidences = np.empty(len(crops), np.float32)
        for start in range(0, len(crops), self.batch_size):
            part = slice(start, start + self.batch_size)
            inputs = np.stack([crop(c, ctr, s) for c, ctr, s in zip(crops[part], centers[part], scales[part])])
            x = torch.from_numpy(inputs).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
            with torch.no_grad():
                heatmaps = self.net(x)[-1]
            heatmaps = np.ascontiguousarray(heatmaps.float().cpu().numpy())
            # Without center/scale the library returns heatmap coordinates only (and skips its integer mapping).
            hm_points, _, peaks = get_preds_fromhm(heatmaps)
            points[part] = heatmap_to_image(hm_points, centers[part], scales[part])
            confidences[part] = np.clip(peaks, 0.0, 1.0).mean(axis=1)
        return points, confidences
