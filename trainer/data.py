"""Stream clips from the pipeline's shards into training batches, as the papers sample them.

For fold k the training partitions' shards are read (a validation split is carved from them
by a hash of the clip key, so it never changes; a dataset with partitions train, val and test
validates on its val partition instead, whole, and never trains on it), and the test
partition's shards for evaluation (`split_partitions`). Each epoch the shard list is shuffled with a seed derived from the epoch before
it is split across DDP ranks and loader workers by the shard reader's rule
(`pipeline.shards.reader.shards_for_this_process`), so every process agrees on who reads
what. Shards keep manifest order, which is often sorted by class (FERV39k's by scene, then
class: 92 % of one of its 64-clip shards is a single class), so in training each worker mixes
its share twice: it reads `open_shards` of its shards at once, drawing each next sample from
one of the open shards chosen uniformly at random and opening the share's next shard when one
ends (`interleave`), and then passes the samples through a buffer of `shuffle_buffer` raw
samples (`shuffled`); both seeded by seed, epoch and worker, so an epoch is reproducible and
every clip is read exactly once. With FERV39k's manifest order, a training batch of 16 then
holds 5.66 distinct classes on average with 2 loader workers (5.41 with 8 GPUs x 2 workers,
whose shares are ~30 shards each) where a random permutation gives 5.84 and reading the shards
one after another (`open_shards=1`, the former loader) gave 3.37 (tests/test_loader_mixing.py).
Validation and test streams keep shard order. The rank is part of every seed of the augmentation
and the buffer, so each DDP rank draws its own crops, flips and frames (and a rerun draws the same).
A sample that fails to decode is skipped and counted; a warning is logged for the first few and then
every 100th. A test clip lost that way is not lost from the metrics: `trainer.metrics` counts every
ok clip of the test fold's status tables that never reached the model as wrong. The tars are read by the
shard reader's own parser (`pipeline.shards.tar.iter_tar_members`, grouping members into samples
as webdataset does, at a tenth of `tarfile`'s cost per member), the shuffle buffer is
webdataset's, and JPEG frames are decoded by simplejpeg where it is installed (`decode_jpeg_bgr`).

Per clip: 16 frames from the clip's face frames (`trainer.sampling`: a faceless stretch is never
drawn; a clip with no face frame falls back to every frame, counted and logged), by the rule
`train_sampling`: one random frame per equal segment in training ("segments", ours) or DFER-CLIP's
segments of n // 16 frames ("dferclip"), and the centre frame of each segment in evaluation; clips
shorter than 16 frames repeat their last frame. In training one draw of the augmentation per clip
is applied to all its frames, in this order:

- `brightness` b > 0 (DFER-CLIP's DFEW setting, 0.5): one factor uniform in
  [max(0, 1 - b), 1 + b] multiplies the frames, truncated to [0, 255] as PIL's
  `ImageEnhance.Brightness` (torchvision's `adjust_brightness` on PIL images) does; frames only.
- `rotation` r > 0 (DFER-CLIP's FERV39k setting, 4): one angle uniform in [-r, r] degrees,
  counter-clockwise, about the frame centre, same size, black fill, nearest neighbour: PIL's
  `Image.rotate(angle)` default, which `cv2.warpAffine(..., INTER_NEAREST)` reproduces (both
  round the source coordinate of each pixel centre; they differ only on ties at OpenCV's
  1/1024-pixel precision). The parsing masks are rotated the same way (nearest, background
  fill) and the landmarks by the same matrix, so the middle-level branches stay aligned.
- the random resized crop (area in `crop_scale`, DFER-CLIP's 0.08-1; aspect ratio log-uniform
  in [3/4, 4/3], symmetric under swapping w and h: DFER-CLIP draws it uniformly in that range
  and swaps w and h with p = 0.5, which is symmetric too and differs only in the density
  within the range, so the swap is not added) and the horizontal flip, on the frames, the parsing masks (nearest pixel centre; left/right
  labels swapped on a flip) and the landmarks (mirrored and re-indexed on a flip), all three
  with pixel centres at integers, so they agree to a fraction of a pixel even on 8 % crops.

Masks become colour images and landmarks are drawn as images for the middle-level branches.
Evaluation resizes the whole frame to `image_size`.

The loader yields uint8 images, channels first: frames, masks and landmarks are (T, 3, H, W)
per clip and (B, T, 3, H, W) per batch, 4x smaller than float32 in shared memory, pinned memory
and on the way to the GPU. The float conversion and normalisation, which cost two thirds of a
clip's time in a loader worker, happen where the batch enters the model:
`to_model_inputs(batch, device, normalise=...)` moves it to the device and normalises there
(nearly free on a GPU), with exactly the same values as normalising in the worker: "clip"
(the default) is (x / 255 - mean) / std with CLIP's mean and std, "unit" is x / 255 in [0, 1]
with no mean/std, as DFER-CLIP's reference code feeds its model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
import webdataset as wds

try:
    import simplejpeg
except ImportError:   # an install without it (not `make env`) decodes with OpenCV, a little slower
    simplejpeg = None

from pipeline.shards.layout import (INNER_LIPS, JAW, LEFT_BROW, LEFT_EYE, NOSE_BASE, NOSE_BRIDGE, OUTER_LIPS,
                                   PARSING_LABELS, PARSING_PALETTE, RIGHT_BROW, RIGHT_EYE, mirror_landmarks)
from pipeline.inputs.manifest import partition_scheme
from pipeline.shards.format import ClipSample, ShardFormatError, decode_sample
from pipeline.shards.reader import iter_tar_members, list_shards, shards_for_this_process
from trainer.sampling import TRAIN_SAMPLINGS, clip_frame_indices, tsn_indices  # noqa: F401 (tsn_indices re-exported)

log = logging.getLogger(__name__)

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
IMAGE_KEYS = ("frames", "masks", "landmarks")   # uint8 (B, T, 3, H, W) in a batch from the loader

_LABEL = {name: i for i, name in enumerate(PARSING_LABELS)}
# On a horizontal flip the subject's left and right parts swap sides.
MASK_MIRROR = np.arange(len(PARSING_LABELS), dtype=np.uint8)
for left, right in (("l_brow", "r_brow"), ("l_eye", "r_eye"), ("l_ear", "r_ear")):
    MASK_MIRROR[_LABEL[left]], MASK_MIRROR[_LABEL[right]] = _LABEL[right], _LABEL[left]
# Mask colouring, one 256-entry lookup table per channel (cv2.LUT); labels past the palette get
# its last colour. With a horizontal flip the left/right label swap is folded into the table.
_LABEL_IDS = np.arange(256)
_MIRROR_ALL = np.where(_LABEL_IDS < len(MASK_MIRROR), MASK_MIRROR[np.minimum(_LABEL_IDS, len(MASK_MIRROR) - 1)],
                       _LABEL_IDS)
_MASK_LUTS = {flip: [np.ascontiguousarray(PARSING_PALETTE[np.minimum(ids, len(PARSING_PALETTE) - 1), c])
                     for c in range(3)]
              for flip, ids in ((False, _LABEL_IDS), (True, _MIRROR_ALL))}
# Landmark drawing: each facial part a polyline in its own colour.
_PARTS = ((JAW, False, (255, 255, 255)), (RIGHT_BROW, False, (255, 128, 0)), (LEFT_BROW, False, (255, 128, 0)),
          (NOSE_BRIDGE, False, (0, 255, 0)), (NOSE_BASE, False, (0, 255, 0)), (RIGHT_EYE, True, (0, 128, 255)),
          (LEFT_EYE, True, (0, 128, 255)), (OUTER_LIPS, True, (255, 0, 128)), (INNER_LIPS, True, (255, 0, 255)))


@dataclass(frozen=True)
class DataConfig:
    shards: str                   # the dataset folder written by `make preprocess`
    fold: int = 1
    num_frames: int = 16
    image_size: int = 224
    batch_size: int = 8
    workers: int = 2
    val_fraction: float = 0.1
    seed: int = 0
    use_masks: bool = True
    use_landmarks: bool = True
    crop_scale: tuple[float, float] = (0.8, 1.0)
    flip: bool = True
    brightness: float = 0.0       # training: frames × a factor uniform in [max(0, 1 - b), 1 + b] per clip; 0: off
    rotation: float = 0.0         # training: rotation uniform in ±`rotation` degrees per clip (frames, masks,
    #                               landmarks); 0: off
    shuffle_buffer: int = 64      # training clips mixed across shards (raw bytes, ~0.7 MiB each); 0: shard order
    drop_last: bool = False       # training: only full batches, less than one batch dropped an epoch (DFER-CLIP's
    #                               drop_last=True; `training_batches` pools the workers' short last batches first)
    open_shards: int = 64         # training: shards each loader worker reads at once, interleaved; 1: one by one
    landmark_style: str = "lines"  # the landmark images: "lines" on black (ours), "points_on_face" (FineCLIPER's figure)
    train_sampling: str = "segments"  # training frames: "segments" (ours) or "dferclip" (trainer/sampling.py)

    def __post_init__(self) -> None:
        if self.train_sampling not in TRAIN_SAMPLINGS:
            raise ValueError(f"train_sampling must be one of {TRAIN_SAMPLINGS}, got {self.train_sampling!r}")
        if self.brightness < 0 or self.rotation < 0:
            raise ValueError(f"brightness and rotation must be >= 0, got {self.brightness}, {self.rotation}")
        if self.open_shards < 1:
            raise ValueError(f"open_shards must be >= 1, got {self.open_shards}")
        if self.landmark_style not in LANDMARK_STYLES:
            raise ValueError(f"landmark_style must be one of {LANDMARK_STYLES}, got {self.landmark_style!r}")


def read_index(shards: str | Path) -> dict:
    path = Path(shards) / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `make preprocess` for this dataset first")
    return json.loads(path.read_text())


def dataset_folds(index: dict) -> list[int]:
    """The fold numbers of the dataset in `index` (`FOLD=all`): its `fold<k>` partitions that hold any
    clip (a small sample's manifest may leave some empty); [1] for a single split (train + test, or
    train + val + test)."""
    written = {s["partition"] for s in index.get("shards", [])} or set(index["partitions"])
    return sorted(int(p[4:]) for p in index["partitions"] if p.startswith("fold") and p in written) or [1]


def split_partitions(index: dict, fold: int) -> dict[str, list[str]]:
    """The partitions each split reads for fold `fold`: {"train": [...], "val": [...], "test": [...]}.
    "val" is empty where the validation split is carved from the training partitions (k folds, or
    train + test); with a `val` partition it is that partition, never trained on. Any other scheme
    is refused, naming the partitions found (`pipeline.inputs.manifest.partition_scheme`)."""
    partitions = index["partitions"]
    scheme = partition_scheme(partitions)
    if scheme == "train_val_test":
        return {"train": ["train"], "val": ["val"], "test": ["test"]}
    if scheme == "train_test":                                 # one official split (FERV39k)
        return {"train": ["train"], "val": [], "test": ["test"]}
    test = f"fold{fold}"
    if test not in partitions:
        raise ValueError(f"fold {fold}: no partition {test!r} in {', '.join(partitions)}")
    return {"train": [p for p in partitions if p != test], "val": [], "test": [test]}


def fold_partitions(index: dict, fold: int) -> tuple[list[str], str]:
    """(training partitions, test partition) for fold `fold` of the dataset in `index`."""
    splits = split_partitions(index, fold)
    return splits["train"], splits["test"][0]


def has_val_partition(index: dict) -> bool:
    """Whether the dataset brings its own validation partition (train + val + test)."""
    return partition_scheme(index["partitions"]) == "train_val_test"


def is_validation(key: str, fraction: float, seed: int) -> bool:
    """A stable pseudo-random choice of validation clips among the training partitions."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def random_resized_crop(size: int, scale: tuple[float, float], rng: random.Random) -> tuple[float, float, float, float]:
    """A crop box (x0, y0, w, h) as fractions of the frame: area in `scale`, aspect ratio 3/4..4/3."""
    for _ in range(10):
        area = rng.uniform(*scale)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = math.sqrt(area * ratio), math.sqrt(area / ratio)
        if w <= 1 and h <= 1:
            return rng.uniform(0, 1 - w), rng.uniform(0, 1 - h), w, h
    return 0.0, 0.0, 1.0, 1.0


@dataclass(frozen=True)
class Augmentation:
    """One clip's draw of the training augmentation (the identity in evaluation)."""
    box: tuple[int, int, int, int]   # crop (x, y, w, h) in pixels of the source frame
    flip: bool = False
    angle: float = 0.0               # degrees, counter-clockwise about the frame centre; 0: no rotation
    brightness: float = 1.0          # frame factor; 1: unchanged


def rotation_matrix(angle: float, width: int, height: int) -> np.ndarray:
    """The 2×3 matrix taking pixel coordinates (pixel centres at integers, as the landmarks) of a
    width×height image to those of the image rotated by `angle` degrees counter-clockwise about its
    centre, as PIL's `Image.rotate(angle)` (whose centre (w/2, h/2) in its edge-based coordinates is
    ((w - 1)/2, (h - 1)/2) here)."""
    return cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)


def rotate_image(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """`image` (H×W or H×W×C) warped by `matrix` (`rotation_matrix`): nearest neighbour (PIL's default
    for `Image.rotate`, and the only choice for label masks), zero fill, same size."""
    height, width = image.shape[:2]
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def rotate_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(..., 2) pixel coordinates moved by `matrix` (float32; non-finite points stay non-finite)."""
    return (points @ matrix[:, :2].T.astype(np.float32) + matrix[:, 2].astype(np.float32)).astype(np.float32)


def brightness_lut(factor: float) -> np.ndarray:
    """The 256-entry table of PIL's brightness enhancement (`Image.blend` with black): each value
    times `factor` in float32, clipped to [0, 255] and truncated, as its 8-bit blend does."""
    values = np.arange(256, dtype=np.float32) * np.float32(factor)
    return np.clip(values, 0, 255).astype(np.uint8)


def colour_masks(masks: np.ndarray) -> np.ndarray:
    """T×H×W labels -> T×H×W×3 uint8 colour images."""
    return PARSING_PALETTE[np.minimum(masks, len(PARSING_PALETTE) - 1)]


LANDMARK_STYLES = ("lines", "points_on_face")


def draw_landmarks(points: np.ndarray, size: int, style: str = "lines", faces: np.ndarray | None = None) -> np.ndarray:
    """T×68×2 points (pixels of a size×size image) -> T×size×size×3 uint8 drawings.

    "lines" (ours): each facial part as a coloured polyline on black. "points_on_face" (FineCLIPER's
    figure): each point as a dot, coloured by part, over `faces` (T×size×size×3 RGB, the clip's frames).
    """
    if style not in LANDMARK_STYLES:
        raise ValueError(f"landmark style must be one of {LANDMARK_STYLES}, got {style!r}")
    if style == "points_on_face":
        if faces is None:
            raise ValueError("landmark style 'points_on_face' needs the frames to draw on")
        out = np.array(faces, dtype=np.uint8, order="C")   # one copy: the caller's frames stay as they are
    else:
        out = np.zeros((len(points), size, size, 3), np.uint8)
    thickness = max(1, size // 112)
    for image, frame_points in zip(out, points):
        if not np.isfinite(frame_points).all():
            continue
        for part, closed, colour in _PARTS:
            line = np.round(frame_points[list(part)] * 16).astype(np.int32)
            if style == "lines":
                cv2.polylines(image, [line], closed, colour, thickness, cv2.LINE_AA, 4)
            else:
                for x, y in line:
                    cv2.circle(image, (int(x), int(y)), 16 * thickness, colour, -1, cv2.LINE_AA, 4)
    return out


def to_chw(images: np.ndarray) -> torch.Tensor:
    """T×H×W×3 uint8 (any strides) -> T×3×H×W uint8 tensor, one copy (cv2.split per frame)."""
    out = np.empty((images.shape[0], 3, *images.shape[1:3]), np.uint8)
    for image, planes in zip(images, out):
        cv2.split(np.ascontiguousarray(image), list(planes))   # writes into the three planes in place
    return torch.from_numpy(out)


@lru_cache(maxsize=None)
def _clip_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """255, CLIP's mean and std as float32 (3, 1, 1) tensors on `device`, made once per device (no copy,
    and no host sync, per batch). 255 is a tensor too: a CPU-scalar divisor becomes a multiplication by
    its reciprocal on CUDA, one bit off the division the worker-side formula did."""
    def const(values) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, np.float32)).view(3, 1, 1).to(device)

    return const([255.0] * 3), const(CLIP_MEAN), const(CLIP_STD)


def clip_normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 (..., 3, H, W): (x / 255 - mean) / std with CLIP's mean and std,
    computed on `images`' device. Exactly the float32 values of the same formula applied in numpy."""
    scale, mean, std = _clip_constants(images.device)
    return images.to(torch.float32).div_(scale).sub_(mean).div_(std)


def unit_normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 x / 255 in [0, 1], no mean/std: what DFER-CLIP's reference code
    feeds its model (`ToTorchFormatTensor`), computed on `images`' device."""
    scale = _clip_constants(images.device)[0]
    return images.to(torch.float32).div_(scale)


NORMALISE = {"clip": clip_normalise, "unit": unit_normalise}


def to_model_inputs(batch: dict, device: torch.device | str, non_blocking: bool = True,
                    normalise: str = "clip") -> dict:
    """A batch from the loader -> what the model reads: every tensor on `device` (asynchronously from
    pinned memory) and the uint8 images (`IMAGE_KEYS`) converted to float32 there, by `normalise`:
    "clip" (CLIP's mean/std, `clip_normalise`) or "unit" (x / 255, `unit_normalise`). Image tensors
    that are floating point already are taken as normalised and only moved."""
    if normalise not in NORMALISE:
        raise ValueError(f"normalise must be one of {', '.join(NORMALISE)}, got {normalise!r}")
    convert = NORMALISE[normalise]
    device = torch.device(device)
    out = {}
    for key, value in batch.items():
        if torch.is_tensor(value):
            value = value.to(device, non_blocking=non_blocking)
            if key in IMAGE_KEYS and value.dtype == torch.uint8:
                value = convert(value)
        out[key] = value
    return out


def decode_jpeg_bgr(data: bytes) -> np.ndarray | None:
    """One JPEG as an H×W×3 BGR array, or None when it does not decode. simplejpeg (libjpeg-turbo,
    the library OpenCV decodes with, called without OpenCV's per-image overhead: the same pixels in
    four fifths of the time, `bench/loader_speed.py`), else OpenCV."""
    if simplejpeg is None:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="BGR")
    except ValueError:
        return None


def decode_bgr(clip: ClipSample, indices: np.ndarray) -> list[np.ndarray]:
    """The JPEG frames at `indices` decoded as H×W×3 BGR arrays, each distinct frame once. What
    `ClipSample.frames` decodes, without its conversion to RGB and its stacking into one array: the
    loader resizes frame by frame and swaps the channels when it splits them into planes."""
    decoded: dict[int, np.ndarray] = {}
    for i in map(int, indices):
        if i not in decoded:
            bgr = decode_jpeg_bgr(clip.frame_jpeg(i))
            if bgr is None:
                raise ShardFormatError(f"sample {clip.key}: frame {i} is not a decodable JPEG")
            decoded[i] = bgr
    return [decoded[int(i)] for i in indices]


def map_distinct(function: Callable[[np.ndarray], np.ndarray], images: list[np.ndarray]) -> list[np.ndarray]:
    """`function` applied once per distinct array of `images` (`decode_bgr` repeats the same array for
    a repeated frame index), the list structure kept."""
    done: dict[int, np.ndarray] = {}
    out = []
    for image in images:
        if id(image) not in done:
            done[id(image)] = function(image)
        out.append(done[id(image)])
    return out


class ClipTransform:
    """ClipSample -> training/evaluation example (see the module docstring)."""

    def __init__(self, config: DataConfig, classes: list[str], train: bool):
        self.config, self.train = config, train
        self.class_index = {c: i for i, c in enumerate(classes)}
        self.faceless = FacelessCounter()

    def __call__(self, clip: ClipSample, rng: random.Random) -> dict:
        c = self.config
        indices, faceless = clip_frame_indices(clip.face_detected, clip.landmarks_conf, c.num_frames, self.train,
                                               rng, c.train_sampling)
        if faceless:
            self.faceless(clip.key)
        frames = decode_bgr(clip, indices)
        height, size = frames[0].shape[:2]
        landmarks = clip.landmarks[indices].astype(np.float32).copy()
        masks = clip.masks(indices) if c.use_masks else None
        aug = self.augmentation(size, rng)
        box, flip = aug.box, aug.flip
        if aug.brightness != 1.0:
            lut = brightness_lut(aug.brightness)
            frames = map_distinct(lambda frame: cv2.LUT(frame, lut), frames)
        if aug.angle:
            matrix = rotation_matrix(aug.angle, size, height)
            frames = map_distinct(lambda frame: rotate_image(frame, matrix), frames)
            landmarks = rotate_points(landmarks, matrix)
            if masks is not None:
                masks = np.stack([rotate_image(mask, matrix) for mask in masks])
        interpolation = cv2.INTER_AREA if box[2] > c.image_size else cv2.INTER_LINEAR
        # landmarks follow the same crop, resize and flip: pixel centres at integers, as cv2.resize maps
        # them (output x samples the crop at (x + 0.5) * w / S - 0.5)
        landmarks[..., 0] = (landmarks[..., 0] - box[0] + 0.5) * c.image_size / box[2] - 0.5
        landmarks[..., 1] = (landmarks[..., 1] - box[1] + 0.5) * c.image_size / box[3] - 0.5
        if flip:
            landmarks = mirror_landmarks(landmarks, c.image_size)
        example = {"frames": torch.from_numpy(self.crop_frames(frames, box, flip, interpolation)),
                   "label": self.class_index[clip.label], "key": clip.key, "description": clip.description or "",
                   # what was drawn for this clip: the frames read, and the augmentation (for inspection)
                   "frame_indices": indices.tolist(), "augmentation": dataclasses.asdict(aug)}
        if c.use_masks:
            if masks is None:   # a shard without masks: an empty map
                empty = np.zeros((len(indices), c.image_size, c.image_size), np.uint8)
                example["masks"] = torch.from_numpy(self.crop_masks(empty, (0, 0, c.image_size, c.image_size), False))
            else:
                example["masks"] = torch.from_numpy(self.crop_masks(masks, box, flip))
        if c.use_landmarks:
            faces = example["frames"].permute(0, 2, 3, 1).numpy() if c.landmark_style == "points_on_face" else None
            example["landmarks"] = to_chw(draw_landmarks(landmarks, c.image_size, c.landmark_style, faces))
        return example

    def crop_box(self, size: int, rng: random.Random) -> tuple[tuple[int, int, int, int], bool]:
        """The crop (x, y, w, h) in pixels of a size×size clip, and whether to flip it: random resized
        crop and flip in training, the whole frame in evaluation. One draw per clip, for every frame."""
        c = self.config
        x0, y0, w, h = random_resized_crop(size, c.crop_scale, rng) if self.train else (0.0, 0.0, 1.0, 1.0)
        flip = self.train and c.flip and rng.random() < 0.5
        box = (int(round(x0 * size)), int(round(y0 * size)), max(1, int(round(w * size))), max(1, int(round(h * size))))
        return box, flip

    def augmentation(self, size: int, rng: random.Random) -> Augmentation:
        """One clip's augmentation: `crop_box`, then (training only, each drawn only when switched on,
        so the other draws stay as they were) the rotation angle and the brightness factor."""
        c = self.config
        box, flip = self.crop_box(size, rng)
        angle = rng.uniform(-c.rotation, c.rotation) if self.train and c.rotation > 0 else 0.0
        brightness = (rng.uniform(max(0.0, 1 - c.brightness), 1 + c.brightness)
                      if self.train and c.brightness > 0 else 1.0)
        return Augmentation(box, flip, angle, brightness)

    def _resize(self, image: np.ndarray, box: tuple[int, int, int, int], flip: bool, interpolation: int) -> np.ndarray:
        x, y, w, h = box
        size = self.config.image_size
        out = cv2.resize(image[y:y + h, x:x + w], (size, size), interpolation=interpolation)
        return cv2.flip(out, 1) if flip else out

    def crop_frames(self, frames: list[np.ndarray], box: tuple[int, int, int, int], flip: bool,
                     interpolation: int) -> np.ndarray:
        """T H×W×3 BGR uint8 frames -> T×3×S×S RGB uint8: crop, resize, flip, and split into the planes
        in reverse order (BGR -> RGB), frame by frame, with no other copy of the clip."""
        size = self.config.image_size
        out = np.empty((len(frames), 3, size, size), np.uint8)
        for frame, (red, green, blue) in zip(frames, out):
            cv2.split(self._resize(frame, box, flip, interpolation), [blue, green, red])
        return out

    def crop_masks(self, masks: np.ndarray, box: tuple[int, int, int, int], flip: bool) -> np.ndarray:
        """T×H×W labels -> T×3×S×S uint8 colour images (nearest-neighbour; left/right swapped on a flip)."""
        size = self.config.image_size
        luts = _MASK_LUTS[flip]
        out = np.empty((len(masks), 3, size, size), np.uint8)
        for mask, planes in zip(masks, out):
            # INTER_NEAREST_EXACT: the nearest pixel centre, as the frames' resize and the landmarks map;
            # cv2's INTER_NEAREST takes floor(x * w / S), up to half a source pixel up and left
            labels = self._resize(mask, box, flip, cv2.INTER_NEAREST_EXACT)
            for lut, plane in zip(luts, planes):
                cv2.LUT(labels, lut, dst=plane)
        return out


class FacelessCounter:
    """Counts clips with no face frame (sampled from every frame instead) and logs the first few and
    then every 100th."""

    def __init__(self):
        self.count = 0

    def __call__(self, key: str) -> None:
        self.count += 1
        if self.count <= 3 or self.count % 100 == 0:
            log.warning("clip %s has no face frame: its frames are drawn from the whole clip (%d such clips so "
                        "far)", key, self.count)


class SkipCounter:
    """Counts skipped samples and logs the first few and then every 100th (rate-limited)."""

    def __init__(self):
        self.skipped = 0

    def __call__(self, error: Exception) -> bool:
        self.skipped += 1
        if self.skipped <= 3 or self.skipped % 100 == 0:
            log.warning("skipped a bad sample (%d so far): %s", self.skipped, error)
        return True   # webdataset: continue


class ShardClips(torch.utils.data.IterableDataset):
    """Examples of one split (train / val / test) streamed from the shards with webdataset."""

    def __init__(self, config: DataConfig, split: str, classes: list[str] | None = None):
        self.config, self.split = config, split
        self.index = read_index(config.shards)
        self.classes = classes or self.index["classes"]
        splits = split_partitions(self.index, config.fold)
        self.own_val = bool(splits["val"])   # a val partition of its own: read whole, not carved from train
        self.partitions = splits[split] if split == "test" or self.own_val else splits["train"]
        self.shards = [str(p) for p in list_shards(config.shards, self.partitions)]
        if not self.shards:
            raise FileNotFoundError(f"no shards for {split} ({', '.join(self.partitions)}) in {config.shards}")
        self.transform = ClipTransform(config, self.classes, train=split == "train")
        self.epoch = 0
        self.skips = SkipCounter()

    def __len__(self) -> int:
        """Clips in this split, from the dataset index (the validation share is an estimate)."""
        total = sum(self.index["samples"][p] for p in self.partitions)
        if self.split == "test" or self.own_val:
            return total
        val = int(round(total * self.config.val_fraction))
        return val if self.split == "val" else total - val

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _keep(self, key: str) -> bool:
        if self.split == "test" or self.own_val:
            return True
        return is_validation(key, self.config.val_fraction, self.config.seed) == (self.split == "val")

    def open_shard(self, url: str) -> Iterator[dict]:
        """The raw samples of one shard, grouped as webdataset groups them, by the shard reader's own tar
        parser (`pipeline.shards.tar.iter_tar_members`: a tenth of `tarfile`'s cost per member). A tar
        that breaks off is skipped from there and counted, as webdataset's handler would."""
        try:
            yield from iter_tar_members(url)
        except (ShardFormatError, OSError) as error:
            self.skips(error)

    def __iter__(self) -> Iterator[dict]:
        rank, worker_id = _process_ids()
        # the rank too (`rank_seed`): under torchrun every rank draws its own frames and augmentations
        rng = random.Random(hash(rank_seed((self.config.seed, self.epoch, worker_id), rank)))
        samples = epoch_samples(self.shards, self.open_shard, self.config, self.epoch, train=self.split == "train",
                                keep=lambda raw: self._keep(str(raw.get("__key__", ""))))
        for raw in samples:
            try:
                clip = decode_sample(raw)
            except ShardFormatError as error:
                self.skips(error)
                continue
            if clip.label in self.transform.class_index:
                try:
                    example = self.transform(clip, rng)
                except (ShardFormatError, ValueError, cv2.error) as error:
                    self.skips(error)
                    continue
                yield {**example, "worker": worker_id, "skipped": self.skips.skipped,
                       "faceless": self.transform.faceless.count}


def rank_seed(parts: tuple, rank: int) -> tuple:
    """The parts of a loader seed with the DDP rank added, so that ranks draw differently; rank 0 keeps
    the parts as they are, the seeds of a single-process run (whose results stay as they were)."""
    return parts + (rank,) if rank else parts


def _process_ids() -> tuple[int, int]:
    """(DDP rank, DataLoader worker) of this process: 0 where there is none."""
    rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
    worker = torch.utils.data.get_worker_info()
    return rank, worker.id if worker else 0


def epoch_samples(shards: Sequence, open_shard: Callable[[Any], Iterable], config: DataConfig, epoch: int,
                  train: bool, keep: Callable[[Any], bool] | None = None) -> Iterator:
    """The raw samples this process (DDP rank and loader worker) reads in `epoch`, in the loader's order.

    Training: the epoch's seeded permutation of `shards` (the same in every process), this process's
    share of it by the shard reader's one rule (`shards_for_this_process`), its shards opened with
    `open_shard` and read `config.open_shards` at a time (`interleave`), the samples `keep` accepts,
    then the shuffle buffer (`shuffled`). Evaluation: the share in shard order, one shard after another.
    Pure over `open_shard`, so the same code runs on real shards and on label lists in the tests."""
    urls = shards_for_this_process(shards, config.seed, epoch, shuffle=train)
    rank, worker = _process_ids()
    streams = (open_shard(url) for url in urls)
    if train:
        samples = interleave(streams, config.open_shards, random.Random(f"{config.seed}:{epoch}:{rank}:{worker}:open"))
    else:
        samples = chain.from_iterable(streams)
    if keep is not None:
        samples = filter(keep, samples)
    if train and config.shuffle_buffer > 1:
        samples = shuffled(samples, config.shuffle_buffer,
                           random.Random(":".join(map(str, rank_seed((config.seed, epoch, worker), rank)))))
    return samples


def interleave(streams: Iterable[Iterable], open_shards: int, rng: random.Random) -> Iterator:
    """The items of `streams` (one per shard, each opened, i.e. iterated, only when it is needed) read
    `open_shards` at a time: each next item comes from one of the open streams chosen uniformly at
    random with `rng`, and a stream that ends is replaced by the next one. Every item exactly once, each
    stream's own order kept; `open_shards` <= 1: the streams one after another."""
    streams = iter(streams)
    if open_shards <= 1:
        for stream in streams:
            yield from stream
        return
    active: list[Iterator] = []
    for stream in streams:
        active.append(iter(stream))
        if len(active) == open_shards:
            break
    while active:
        i = rng.randrange(len(active)) if len(active) > 1 else 0
        try:
            item = next(active[i])
        except StopIteration:
            following = next(streams, None)
            if following is not None:
                active[i] = iter(following)
            else:
                active[i] = active[-1]
                active.pop()
            continue
        yield item


def shuffled(items: Iterable, size: int, rng: random.Random) -> Iterator:
    """`items` in a random order drawn through webdataset's shuffle buffer of `size`, filled before
    the first pick: shards are written in manifest order (often sorted by class), so without it a
    batch holds a run of neighbouring clips."""
    return wds.filters.shuffle(size, initial=size, rng=rng)(iter(items))


def collate(examples: list[dict]) -> dict:
    """Examples -> a batch: uint8 (B, T, 3, H, W) images, labels, descriptions, keys.

    The images are stacked with `default_collate`, which in a loader worker writes the stack
    straight into shared memory: the batch then reaches the main process without another copy
    (a plain torch.stack would be copied into shared memory when sent)."""
    batch = {"labels": torch.tensor([e["label"] for e in examples], dtype=torch.long),
             "descriptions": [e["description"] for e in examples], "keys": [e["key"] for e in examples],
             # bad samples skipped and faceless clips met so far by the worker that made this batch (one
             # worker per batch)
             "worker": examples[-1].get("worker", 0), "skipped": examples[-1].get("skipped", 0),
             "faceless": examples[-1].get("faceless", 0)}
    for name in IMAGE_KEYS:
        if name in examples[0]:
            batch[name] = torch.utils.data.default_collate([e[name] for e in examples])
    return batch


def make_loader(config: DataConfig, split: str, classes: list[str] | None = None) -> torch.utils.data.DataLoader:
    """The split's DataLoader. Each worker batches its own share, so every worker's last batch may be
    short; `drop_last` is applied by `training_batches`, which pools those short batches first."""
    dataset = ShardClips(config, split, classes)
    return torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, num_workers=config.workers,
                                       collate_fn=collate, persistent_workers=False,
                                       pin_memory=torch.cuda.is_available())


def concat_batches(batches: list[dict]) -> dict:
    """Batches of `collate` -> one: tensors concatenated, lists joined, the per-worker counters of the last."""
    out = dict(batches[-1])
    for key, value in batches[0].items():
        if torch.is_tensor(value):
            out[key] = torch.cat([b[key] for b in batches])
        elif isinstance(value, list):
            out[key] = [item for b in batches for item in b[key]]
    return out


def slice_batch(batch: dict, start: int, stop: int) -> dict:
    return {key: (value[start:stop] if torch.is_tensor(value) or isinstance(value, list) else value)
            for key, value in batch.items()}


def full_batches(batches: Iterable[dict], size: int) -> Iterator[dict]:
    """Only batches of exactly `size` clips: full ones pass through, the short ones (each loader worker's
    last) are pooled into full batches, and the remainder at the end (fewer than `size` clips) is
    dropped. So an epoch drops less than one batch, as a DataLoader with `drop_last=True` over the whole
    dataset does (DFER-CLIP's main.py), not up to a batch per worker."""
    pending: list[dict] = []
    count = 0
    for batch in batches:
        n = len(batch["keys"])
        if n == size:
            yield batch
            continue
        pending.append(batch)
        count += n
        while count >= size:
            merged = concat_batches(pending)
            yield slice_batch(merged, 0, size)
            count -= size
            pending = [slice_batch(merged, size, size + count)] if count else []


def training_batches(loader: torch.utils.data.DataLoader, batches: Iterable[dict] | None = None) -> Iterator[dict]:
    """The training batches of `loader` (or of `batches`, drawn from it): with `drop_last`, `full_batches`."""
    batches = loader if batches is None else batches
    config = loader.dataset.config
    return full_batches(batches, loader.batch_size) if config.drop_last else iter(batches)
