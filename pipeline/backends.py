"""The three model interfaces of the face stage, their backends, and the profiles that pick them.

Every backend is a small class behind one of these protocols, constructed cheaply and
loading its model on first use (so a Ray actor loads it once, in `setup`). Add a backend
by writing the class and one line in the matching registry below, which also says what
the backend needs: its weight files (from which a profile's downloads and WEIGHTS_DIR
checks are derived), and for describers whether they run inside the face actors or want
a GPU of their own. Nothing outside this module knows a backend by name.

    detector    a clip's searched frames (full-resolution RGB, or luma) -> face boxes with scores, per frame;
                and face crops with the subject's box -> the confidence that a face is there
    landmarker  face crops (N×S×S×3) + face boxes in them -> N×68×2 points, N confidences
    parser      face crops + their landmarks           -> N×S×S CelebAMask-HQ label maps
    describer   finished samples (crops, landmarks, …)   -> a motion description per clip
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from pipeline.weights import BISENET, FAN_2D, S3FD, WeightFile

class FaceDetector(Protocol):
    name: str

    def identity(self) -> dict[str, Any]:
        """What to record in the dataset index: model, weight file and its SHA-256, settings."""

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[tuple[np.ndarray, float]]]:
        """For each RGB uint8 frame, its faces as ((x0, y0, x1, y1) float64 pixels, score), best first.
        The frames of one call are the searched frames of one clip, in order (a detector may follow
        the face from one to the next). A detector with `takes_luma = True` also accepts 2-D grey
        frames, and the face stage then hands it a video's Y plane, never converted to RGB."""

    confirm_threshold: float   # confirm() at or above it: the face is there

    def confirm(self, crops: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """For each N×S×S×3 RGB face crop and the subject's box in it (N×4, crop pixels), the confidence
        in [0, 1] that the box holds a face, found by running the detector again on the crop: how the
        face stage confirms the face frame by frame (pipeline/face/face_frames.py)."""


class LandmarkModel(Protocol):
    name: str

    def identity(self) -> dict[str, Any]: ...

    def predict(self, crops: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """crops N×S×S×3 uint8 RGB, boxes N×4 (the face in crop pixels) ->
        (N×68×2 float32 iBUG-68 points in crop pixels, N float32 confidences in [0, 1])."""


class FaceParser(Protocol):
    name: str

    def identity(self) -> dict[str, Any]: ...

    def parse(self, crops: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """crops N×S×S×3 uint8 RGB, landmarks N×68×2 -> N×S×S uint8 labels (PARSING_LABELS)."""


@dataclass
class Description:
    """What a describer says about one clip."""

    text: str                     # filtered: no sentence that names or implies an emotion
    raw_text: str                 # what the backend produced, before filtering
    record: dict[str, Any]        # backend, model, revision/version, prompt_sha256, generation settings, …
    signals: np.ndarray | None = None     # optional T×K float32 per-frame signals (geometric AUs)
    signal_names: list[str] | None = None  # the K column names of `signals`


class Describer(Protocol):
    name: str

    def identity(self) -> dict[str, Any]: ...

    def describe(self, samples: Sequence[Any]) -> list[Description]:
        """One Description per `pipeline.shards.format.ClipSample` (frames, landmarks, timestamps, …)."""


@dataclass(frozen=True)
class Backend:
    """One registry entry: the class ("module:Class", imported only when chosen, so the cpu profile
    never imports a torch model) and what running it takes."""

    target: str
    weights: tuple[WeightFile, ...] = ()  # files it reads from WEIGHTS_DIR / the caches (pipeline/weights.py)
    # describers only. inline: no model to load and ~1 % of the face stage's work, so it runs inside
    # the face actors on each sample as it is made (the others get an actor pool of their own);
    # gpu: takes a whole GPU per actor where there is one.
    inline: bool = False
    gpu: bool = False
    # describers only: takes `batch_size`, the clips it decodes together (--describe-batch-size)
    batched: bool = False


DETECTORS = {"dlib": Backend("pipeline.face.dlib_models:DlibDetector"),
             # HOG, and dlib's CNN on searched frames where HOG finds no face (docs/real-footage.md)
             "dlib-cnn": Backend("pipeline.face.dlib_models:DlibCnnFallbackDetector"),
             "sfd": Backend("pipeline.face.sfd_detector:SfdDetector", weights=(S3FD,))}
LANDMARKERS = {"dlib": Backend("pipeline.face.dlib_models:DlibLandmarks"),
               "fan": Backend("pipeline.face.fan_landmarks:FanLandmarks", weights=(FAN_2D,))}
PARSERS = {"landmarks": Backend("pipeline.face.landmark_masks:LandmarkMaskParser"),
           "bisenet": Backend("pipeline.face.bisenet_parser:BisenetParser", weights=(BISENET,))}
DESCRIBERS = {"geometric": Backend("pipeline.describers.geometric:GeometricDescriber", inline=True),
              "videollava": Backend("pipeline.describers.videollava:VideoLlavaDescriber", gpu=True, batched=True),
              "qwen2.5-vl": Backend("pipeline.describers.qwen25vl:QwenVLDescriber", gpu=True, batched=True)}
INLINE_DESCRIBERS = frozenset(name for name, backend in DESCRIBERS.items() if backend.inline)


@dataclass(frozen=True)
class Profile:
    name: str
    detector: str
    landmarker: str
    parser: str
    describer: str
    needs_gpu: bool


PROFILES = {
    "full": Profile("full", detector="sfd", landmarker="fan", parser="bisenet", describer="videollava",
                    needs_gpu=True),
    "cpu": Profile("cpu", detector="dlib", landmarker="dlib", parser="landmarks", describer="geometric",
                   needs_gpu=False),
}


def _backend(registry: dict[str, Backend], kind: str, name: str) -> Backend:
    if name not in registry:
        raise ValueError(f"unknown {kind} backend {name!r}; choose from {', '.join(sorted(registry))}")
    return registry[name]


def _construct(registry: dict[str, Backend], kind: str, name: str, weights_dir=None, **kwargs):
    """The backend's object; `weights_dir` reaches only backends that read weight files."""
    backend = _backend(registry, kind, name)
    if backend.weights and weights_dir:
        kwargs["weights_dir"] = weights_dir
    module, cls = backend.target.split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


def make_detector(name: str, weights_dir=None, **kwargs) -> FaceDetector:
    return _construct(DETECTORS, "detector", name, weights_dir, **kwargs)


def make_landmarker(name: str, weights_dir=None, **kwargs) -> LandmarkModel:
    return _construct(LANDMARKERS, "landmark", name, weights_dir, **kwargs)


def make_parser(name: str, weights_dir=None, **kwargs) -> FaceParser:
    return _construct(PARSERS, "parser", name, weights_dir, **kwargs)


def make_describer(name: str, **kwargs) -> Describer:
    return _construct(DESCRIBERS, "describer", name, **kwargs)


def describer_backend(name: str) -> Backend:
    return _backend(DESCRIBERS, "describer", name)


def face_weights(detector: str | None, landmarker: str, parser: str) -> list[WeightFile]:
    """The weight files the face stage's three backends read, in that order (detector None: none runs)."""
    return [file for registry, kind, name in ((DETECTORS, "detector", detector), (LANDMARKERS, "landmark", landmarker),
                                              (PARSERS, "parser", parser)) if name is not None
            for file in _backend(registry, kind, name).weights]
