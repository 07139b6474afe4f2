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


def cnn_detector_path() -> Path:
    import face_recognition_models

    path = Path(face_recognition_models.cnn_face_detector_model_location())
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
    def cnn(self):
        import dlib

        return dlib.cnn_face_detection_model_v1(str(cnn_detector_path()))

    def detect_cnn(self, image: np.ndarray, upsample: int = 0) -> list[tuple[np.ndarray, float]]:
        """Faces found by dlib's CNN (MMOD) detector on an RGB or grey image, best first."""
        image = np.ascontiguousarray(image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2))
        found = [(np.array([d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1], np.float64),
                  float(d.confidence)) for d in self.cnn(image, upsample)]
        return sorted(found, key=lambda item: -item[1])

    @cached_property
    def predictor(self):
        import dlib

        return dlib.shape_predictor(str(shape_predictor_path()))

    def detect(self, image: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> list[tuple[np.ndarray, float]]:
        """Faces as ((x0, y0, x1, y1) float array, detector score), best first: windows whose SVM margin
        exceeds `threshold` (dlib's default 0; negative values also return near misses)."""
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


# What `reference_landmarks()` computes, stored so that a worker's start-up does not spend half a
# second detecting the portrait's face (tests/test_face_stage_parts.py checks the two agree).
ASTRONAUT_LANDMARKS = np.array([
    (179, 104), (180, 116), (181, 127), (182, 139), (185, 150), (191, 160), (200, 168), (209, 176),
    (220, 178), (232, 177), (243, 171), (253, 163), (260, 154), (265, 143), (268, 131), (270, 120),
    (272, 108), (186, 94), (192, 88), (200, 87), (208, 89), (216, 92), (236, 93), (244, 91),
    (252, 91), (260, 92), (265, 99), (226, 102), (225, 111), (225, 119), (225, 127), (214, 131),
    (219, 133), (224, 134), (229, 133), (234, 132), (195, 101), (200, 98), (207, 98), (212, 104),
    (206, 104), (199, 104), (237, 106), (243, 100), (250, 100), (255, 105), (250, 107), (244, 107),
    (201, 139), (209, 139), (218, 139), (224, 141), (230, 140), (238, 140), (246, 141), (238, 151),
    (229, 155), (222, 156), (216, 155), (208, 150), (204, 141), (218, 143), (223, 144), (230, 143),
    (243, 142), (229, 150), (223, 151), (217, 150),
], np.float64)


def _fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """`src` (N×2) mapped onto `dst` by the least-squares similarity transform."""
    src_c, dst_c = src - src.mean(0), dst - dst.mean(0)
    a = (src_c * dst_c).sum() / (src_c**2).sum()
    b = (src_c[:, 0] * dst_c[:, 1] - src_c[:, 1] * dst_c[:, 0]).sum() / (src_c**2).sum()
    rotation = np.array([[a, -b], [b, a]])
    return src_c @ rotation.T + dst.mean(0)


# The HOG margin at which a re-found face counts as confirmed (confidence 0.5), chosen on the real-footage
# set between the lowest margin of a visible face and the highest of a box left on faceless footage
# (docs/real-footage.md; `confidence.recheck_margin` and `random_boxes` in bench/results/real_footage.json).
CONFIRM_MARGIN = -0.7


class DlibDetector:
    """FaceDetector: dlib's HOG frontal-face detector on a grey copy scaled to `detect_size` px (long side).

    HOG finds faces of roughly 80 px and more, so small frames are scaled up and large ones down;
    a frame with no face at that scale is tried once more at twice the size. On grey, HOG finds the
    same faces as on RGB (where dlib takes each gradient from the strongest channel) in 3/4 of the time.
    A 2-D frame is taken as grey already (a video's luma plane), so nothing is converted.

    The frames of one call are the searched frames of one clip, in order. Where the previous
    searched frame had faces, only a region around each (`search_margin` × its side on every
    side) is searched, at the scale the whole frame would be searched at, so a face is found at
    the same size as there; the whole frame is searched on the first frame, on every
    `full_search_every`-th, and whenever the regions find nothing. At 720p this searches a
    quarter of the pixels on most frames.
    """

    name = "dlib"
    takes_luma = True   # detect() accepts 2-D grey frames (the stage may pass a video's Y plane)
    confirm_threshold = 0.5   # confirm() at or above it: a face

    def __init__(self, detect_size: int = 480, full_search_every: int = 8, search_margin: float = 0.4,
                 confirm_margin: float = CONFIRM_MARGIN, confirm_size: int = 90, cnn_fallback: bool = False):
        self.detect_size = detect_size
        self.full_search_every = full_search_every
        self.search_margin = search_margin
        self.confirm_margin = confirm_margin
        self.confirm_size = confirm_size
        self.cnn_fallback = cnn_fallback
        self.models = DlibFaceModels()

    def identity(self) -> dict:
        from pipeline.shards.files import file_sha256

        return {"backend": self.name, "model": "dlib HOG frontal_face_detector", "detect_size": self.detect_size,
                "full_search_every": self.full_search_every, "search_margin": self.search_margin,
                "confirm": {"margin": self.confirm_margin, "size": self.confirm_size, "threshold": self.confirm_threshold},
                **({"cnn_fallback": "mmod_human_face_detector", "cnn_sha256": file_sha256(cnn_detector_path())}
                   if self.cnn_fallback else {})}

    def confirm(self, crops: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(N,) face confidence in [0, 1] of each face box (N×4, crop pixels) in its crop (N×S×S×3 RGB).

        The HOG detector runs again on the box's region (the box grown by a quarter of its side, on
        grey, scaled so the box is `confirm_size` px: just above the detector's 80-px window, so one
        or two pyramid levels suffice, about 5 ms). Its best SVM margin m among the windows that
        overlap the box (IoU at least 0.3) gives 1 / (1 + exp(-2 (m - confirm_margin))): 0.5 at
        `confirm_margin`, 0.88 at the detector's own threshold (0), 0.99 at a margin of 1.6; 0 when
        no window scores within 2 of `confirm_margin` (docs/real-footage.md: how the margin was chosen)."""
        from pipeline.face.track import iou

        out = np.zeros(len(crops), np.float32)
        for i, (crop, box) in enumerate(zip(crops, boxes)):
            if (region := self.confirm_region(crop, box)) is None:
                continue
            small, scale, offset = region
            margins = [m for found, m in self.models.detect(small, 0, self.confirm_margin - 2)
                       if iou(found / scale + offset, box) >= 0.3]
            if margins:
                out[i] = 1 / (1 + np.exp(-2 * (max(margins) - self.confirm_margin)))
        return out

    def confirm_region(self, crop: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float, np.ndarray] | None:
        """What `confirm` searches for the face in `box`: the box grown by a quarter of its side, grey,
        scaled so the box is `confirm_size` px; with that scale and the region's offset (x0, y0, x0, y0)
        in crop pixels. None when the box is empty or the region too small."""
        import cv2

        side = max(box[2] - box[0], box[3] - box[1])
        if not side > 0:
            return None
        grow, scale = side / 4, self.confirm_size / side
        x0, y0 = max(0, int(box[0] - grow)), max(0, int(box[1] - grow))
        x1, y1 = min(crop.shape[1], int(np.ceil(box[2] + grow))), min(crop.shape[0], int(np.ceil(box[3] + grow)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        grey = crop[y0:y1, x0:x1] if crop.ndim == 2 else cv2.cvtColor(crop[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
        small = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        return small, scale, np.array([x0, y0, x0, y0], np.float64)

    def detect(self, frames) -> list[list[tuple[np.ndarray, float]]]:
        out: list[list[tuple[np.ndarray, float]]] = []
        upsample = 0   # what the last whole-frame search that found a face needed
        for index, frame in enumerate(frames):
            previous = out[-1] if out else []
            faces = []
            if previous and self.full_search_every > 1 and index % self.full_search_every:
                faces = self._search_around(frame, [box for box, _ in previous], upsample)
            if not faces:
                faces, found_at = self._search_whole(frame)
                upsample = found_at if faces else upsample
            if not faces and self.cnn_fallback:
                faces = self._search_cnn(frame)
            out.append(faces)
        return out

    def _search_cnn(self, frame: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """dlib's CNN detector on the whole frame at the HOG search's scale (`cnn_fallback`): where HOG
        finds nothing. It finds faces from about 40 px, turned further than HOG's five poses allow, at
        about a second per 480×270 frame on one core (docs/real-footage.md)."""
        scale = self._scale(frame)
        small = self._grey(frame, scale)
        return [(box / scale, score) for box, score in self.models.detect_cnn(small)]

    def _scale(self, frame: np.ndarray) -> float:
        return self.detect_size / max(frame.shape[:2])

    def _grey(self, image: np.ndarray, scale: float) -> np.ndarray:
        import cv2

        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)

    def _search_whole(self, frame: np.ndarray) -> tuple[list[tuple[np.ndarray, float]], int]:
        """The faces in the whole frame, and the upsampling that found them (0, else 1)."""
        scale = self._scale(frame)
        small = self._grey(frame, scale)
        for upsample in (0, 1):
            if faces := self.models.detect(small, upsample=upsample):
                return [(box / scale, score) for box, score in faces], upsample
        return [], 0

    def _search_around(self, frame: np.ndarray, boxes: list[np.ndarray],
                       upsample: int) -> list[tuple[np.ndarray, float]]:
        """Faces found in the regions around `boxes` (frame pixels), at the scale and upsampling of the
        whole-frame search that found them."""
        from pipeline.face.track import iou

        scale, (height, width) = self._scale(frame), frame.shape[:2]
        found: list[tuple[np.ndarray, float]] = []
        for box in boxes:
            grow = self.search_margin * max(box[2] - box[0], box[3] - box[1])
            x0, y0 = (max(0, int(np.floor(v - grow))) for v in box[:2])
            x1, y1 = min(width, int(np.ceil(box[2] + grow))), min(height, int(np.ceil(box[3] + grow)))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            small = self._grey(frame[y0:y1, x0:x1], scale)
            for face, score in self.models.detect(small, upsample=upsample):
                face = face / scale + np.array([x0, y0, x0, y0], np.float64)
                if all(iou(face, other) < 0.5 for other, _ in found):
                    found.append((face, score))
        return sorted(found, key=lambda item: -item[1])


class DlibCnnFallbackDetector(DlibDetector):
    """FaceDetector `dlib-cnn`: DlibDetector with `cnn_fallback` on."""

    name = "dlib-cnn"

    def __init__(self, **kwargs):
        super().__init__(cnn_fallback=True, **kwargs)


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

    reference = ASTRONAUT_LANDMARKS   # a real face, the plausibility reference

    def reference_landmarks(self) -> np.ndarray:
        """The 68 points of the public-domain astronaut portrait (scikit-image), found by these models."""
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
