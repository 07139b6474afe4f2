"""face-alignment's S3FD face detector for the `full` profile.

Wraps `face_alignment.detection.sfd.sfd_detector.SFDDetector` (the library's default
detector), built from a weight file we resolved ourselves so it never downloads. Frames of
equal size go through the network together (`detect_from_batch`); the library keeps faces
scoring above 0.5 after non-maximum suppression at IoU 0.3.

Frames whose longer side exceeds `max_side` are shrunk to it before detection and the boxes
scaled back to the frame's pixels: S3FD's cost grows with the pixel count, and the one face
of a DFER clip stays far above the detector's smallest size (~16 px) at 1280 px. Pass
`max_side=None` to detect at full resolution.

`confirm` runs S3FD again on each frame's face crop and takes the score of its best detection
overlapping the subject's box: the face confidence of the frame (pipeline/face/face_frames.py),
confirmed from the library's own threshold, 0.5. (Not measured on real faces in this project: the
S3FD weights cannot be fetched here; the `cpu` profile's HOG is, docs/real-footage.md.)
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from pipeline.shards.files import file_sha256
from pipeline.weights import S3FD, resolve_weight


class SfdDetector:
    """FaceDetector backend: S3FD on full RGB frames."""

    name = "sfd"
    confirm_threshold = 0.5   # the library's filter_threshold: S3FD's own operating point

    def __init__(self, device: str | None = None, weights_dir=None, batch_size: int = 8,
                 max_side: int | None = 1280, threshold: float = 0.5):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.weights_dir = weights_dir
        self.batch_size = batch_size
        self.max_side = max_side
        self.threshold = threshold

    @cached_property
    def weights_path(self):
        return resolve_weight(S3FD, self.weights_dir)

    @cached_property
    def detector(self):
        from face_alignment.detection.sfd.sfd_detector import SFDDetector

        # The library reads the file itself; a corrupted one fails in torch.load (zip, pickle or EOF
        # errors), a wrong one in load_state_dict: either way the message names the file.
        try:
            return SFDDetector(self.device, path_to_detector=str(self.weights_path), filter_threshold=self.threshold)
        except Exception as error:  # noqa: BLE001
            raise RuntimeError(f"{self.weights_path} is not a readable S3FD state dict "
                               f"({type(error).__name__}: {error})") from error

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "model": "S3FD", "weights": S3FD.name, "sha256": file_sha256(self.weights_path),
                "max_side": self.max_side, "threshold": self.threshold}

    def _prepare(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The frame as the network sees it (RGB uint8, maybe shrunk) and the factors back to frame pixels."""
        frame = np.asarray(frame)
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an H×W×3 RGB frame, got shape {frame.shape}")
        longest = max(frame.shape[:2])
        if self.max_side is None or longest <= self.max_side:
            return frame, np.ones(4)
        width, height = (max(1, round(n * self.max_side / longest)) for n in (frame.shape[1], frame.shape[0]))
        shrunk = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        sx, sy = frame.shape[1] / width, frame.shape[0] / height
        return shrunk, np.array([sx, sy, sx, sy])

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[tuple[np.ndarray, float]]]:
        prepared = [self._prepare(f) for f in frames]
        results: list[list[tuple[np.ndarray, float]]] = [[] for _ in prepared]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, (image, _) in enumerate(prepared):
            by_shape.setdefault(image.shape, []).append(i)
        for indices in by_shape.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                batch = torch.from_numpy(np.stack([prepared[i][0] for i in chunk])).permute(0, 3, 1, 2)
                # The library takes RGB (it swaps to BGR itself) and returns [x0, y0, x1, y1, score] rows.
                for i, found in zip(chunk, self.detector.detect_from_batch(batch.to(self.device))):
                    factors = prepared[i][1]
                    faces = [(np.asarray(row[:4], np.float64) * factors, float(row[4])) for row in found]
                    results[i] = sorted(faces, key=lambda face: -face[1])
        return results

    def confirm(self, crops: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N,) face confidence of each face box (N×4, crop pixels) in its crop (N×S×S×3 RGB): the S3FD
        score of the best detection in the crop overlapping the box (IoU at least 0.3), else 0."""
        from pipeline.face.track import iou

        out = np.zeros(len(crops), np.float32)
        for i, faces in enumerate(self.detect(list(crops))):
            scores = [score for found, score in faces if iou(found, boxes[i]) >= 0.3]
            out[i] = max(scores, default=0.0)
        return out
