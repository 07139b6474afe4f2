"""The crop geometry docs/shard-format.md states, checked numerically through the face stage.

A frame folder of lossless PNGs shows one bright Gaussian spot at a known sub-pixel position
on a black background. The face stage runs with a stand-in detector (a box around the spot,
found on the frames as the stage decoded them) and a stand-in landmark model (the spot's
intensity centroid in the crop, as all 68 points), so the only geometry involved is the
stage's own: decode scale, crop squares, the affine warp, and the boxes it records. The
stated convention — crop pixel (u, v) has its centre on source point
(x0 + u·(x1 − x0)/S, y0 + v·(y1 − y0)/S), pixel centres at integer coordinates in both — must
put the spot back where it was drawn, to a small fraction of a pixel; the pixel-edge reading
of the same numbers would be off by half a crop pixel, which the cases are sized to show.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.run.stages import FaceConfig, FaceStage

CROP = 64


def spot_frames(folder: Path, width: int, height: int, centres: np.ndarray, sigma: float) -> None:
    """Write one PNG per centre: a Gaussian spot (peak 250) centred on (x, y), pixel centres at integers."""
    folder.mkdir(parents=True)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    for t, (x, y) in enumerate(centres):
        spot = 250 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
        image = np.repeat(np.round(spot).astype(np.uint8)[..., None], 3, axis=2)
        cv2.imwrite(str(folder / f"{t:06d}.png"), image)


def centroid(image: np.ndarray) -> np.ndarray:
    """Intensity centroid (x, y) of a grey or RGB image, pixel centres at integer coordinates."""
    grey = image.astype(np.float64)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    grey = np.where(grey > 2, grey, 0)  # ignore the faint tails the warp smears to the crop's edge
    ys, xs = np.mgrid[0:grey.shape[0], 0:grey.shape[1]]
    return np.array([(grey * xs).sum(), (grey * ys).sum()]) / grey.sum()


class SpotDetector:
    """A face box of `side` decoded pixels around the spot, off-centre on purpose; the spot is always
    confirmed as the face."""

    confirm_threshold = 0.5

    def __init__(self, side: float):
        self.side = side

    def confirm(self, crops, boxes):
        return np.ones(len(crops), np.float32)

    def detect(self, frames):
        out = []
        for frame in frames:
            x, y = centroid(frame)
            box = np.array([x - 0.4 * self.side, y - 0.55 * self.side, x + 0.6 * self.side, y + 0.45 * self.side])
            out.append([(box, 1.0)])
        return out


class SpotLandmarks:
    def predict(self, crops, boxes):
        points = np.stack([np.tile(centroid(crop), (68, 1)) for crop in crops]).astype(np.float32)
        return points, np.ones(len(crops), np.float32)


class NoMasks:
    def parse(self, crops, landmarks):
        return np.zeros(crops.shape[:3], np.uint8)


def run_face_stage(tmp_path, folder: Path, side: float, max_frame_bytes: int):
    config = FaceConfig(dataset="geometry", manifest="", data_root=str(tmp_path), work_dir=str(tmp_path / "work"),
                        crop_size=CROP, detect_every=1, max_frame_bytes=max_frame_bytes)
    stage = FaceStage(config)
    stage.detector, stage.landmarker, stage.parser = SpotDetector(side), SpotLandmarks(), NoMasks()
    meta = {"dataset": "geometry", "clip_id": "spot", "label": "neutral", "partition": "fold1"}
    return stage.sample_from_file(folder, "spot", meta, "spot")


@pytest.mark.parametrize("width, height, sigma, side, max_frame_bytes", [
    (160, 120, 2.5, 20.0, 512 * 2**20),       # crop upscaled ×2.1 (side ×1.5 margin = 30 px → 64)
    (640, 480, 9.0, 120.0, 512 * 2**20),      # crop downscaled to 0.36: the stage's area pre-resize path
    (640, 480, 9.0, 60.0, 6 * 640 * 480),     # frames decoded at half size to fit the memory budget
], ids=["crop-upscaled", "crop-downscaled", "decode-downscaled"])
def test_boxes_and_landmarks_map_back_to_source_pixels(tmp_path, width, height, sigma, side, max_frame_bytes):
    rng = np.random.default_rng(width)
    frames = 6
    # a spot that drifts by a few pixels, so the smoothed track keeps it near the crop's middle
    start = rng.uniform([0.4 * width, 0.4 * height], [0.6 * width, 0.6 * height])
    centres = start + np.cumsum(rng.uniform(-1.5, 1.5, (frames, 2)), axis=0)
    spot_frames(tmp_path / "spot", width, height, centres, sigma)
    sample = run_face_stage(tmp_path, tmp_path / "spot", side, max_frame_bytes)
    if max_frame_bytes < 512 * 2**20:
        assert sample.meta["source"]["scale"] < 0.6   # the case really decodes at reduced size
    assert (sample.meta["source"]["width"], sample.meta["source"]["height"]) == (width, height)
    x0, y0, x1, y1 = sample.boxes.astype(np.float64).T
    # the stated mapping: crop coordinates -> source pixels, per axis
    found = np.stack([x0 + sample.landmarks[:, 0, 0] * (x1 - x0) / CROP,
                      y0 + sample.landmarks[:, 0, 1] * (y1 - y0) / CROP], axis=1)
    assert np.abs(found - centres).max() < 0.05, found - centres   # measured: 0.005 to 0.02 px
    # the pixel-edge reading of the same numbers, x = x0 + (u + 0.5)·(x1 − x0)/S − 0.5, misses
    edges = found + 0.5 * ((x1 - x0) / CROP)[:, None] - 0.5
    assert np.abs(edges - centres).max() > 0.2
    # boxes are squares, up to the rounding of a reduced decode size
    assert np.allclose(x1 - x0, y1 - y0, rtol=0.01)
    # and the same mapping, inverted, finds the spot in the stored JPEG crops
    crops = sample.frames()
    for t in range(frames):
        u = (centres[t] - [x0[t], y0[t]]) * CROP / np.array([x1[t] - x0[t], y1[t] - y0[t]])
        assert np.abs(centroid(crops[t]) - u).max() < 0.1   # JPEG q90 moves the centroid a little
