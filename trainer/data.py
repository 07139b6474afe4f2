"""Stream clips from the pipeline's shards into training batches, as the papers sample them.

For fold k the training partitions' shards are read (a validation split is carved from them
by a hash of the clip key, so it never changes), and the test partition's shards for
evaluation. Each epoch the shard list is shuffled with a seed derived from the epoch before
it is split across DDP ranks and loader workers by the shard reader's rule
(`pipeline.shards.reader.shards_for_this_process`), so every process agrees on who reads
what. In training, each worker then mixes its clips through a buffer of `shuffle_buffer` raw samples (seeded by seed, epoch and worker), because shards keep manifest
order, which is often sorted by class. A sample that fails to decode is skipped and counted; a warning
is logged for the first few and then every 100th.

Per clip: 16 frames, one random frame per equal segment in training and the centre frame
of each segment in evaluation; clips shorter than 16 frames repeat their last frame. In
training the same random resized crop and horizontal flip are applied to the frames, the
parsing masks (nearest-neighbour; left/right labels swapped on a flip) and the landmarks
(mirrored and re-indexed on a flip). Masks become colour images and landmarks are drawn as
images for the middle-level branches.

The loader yields uint8 images, channels first: frames, masks and landmarks are (T, 3, H, W)
per clip and (B, T, 3, H, W) per batch, 4x smaller than float32 in shared memory, pinned memory
and on the way to the GPU. The float conversion and CLIP's mean/std normalisation, which cost
two thirds of a clip's time in a loader worker, happen where the batch enters the model:
`to_model_inputs(batch, device)` moves it to the device and normalises there (nearly free on a
GPU), with exactly the same values as normalising in the worker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch
import webdataset as wds

from pipeline.shards.layout import (INNER_LIPS, JAW, LEFT_BROW, LEFT_EYE, NOSE_BASE, NOSE_BRIDGE, OUTER_LIPS,
                                   PARSING_LABELS, PARSING_PALETTE, RIGHT_BROW, RIGHT_EYE, mirror_landmarks)
from pipeline.shards.format import ClipSample, ShardFormatError, decode_sample
from pipeline.shards.reader import list_shards, shards_for_this_process

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
    shuffle_buffer: int = 64      # training clips mixed across shards (raw bytes, ~0.7 MiB each); 0: shard order


def read_index(shards: str | Path) -> dict:
    path = Path(shards) / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `make preprocess` for this dataset first")
    return json.loads(path.read_text())


def fold_partitions(index: dict, fold: int) -> tuple[list[str], str]:
    """(training partitions, test partition) for fold `fold` of the dataset in `index`."""
    partitions = index["partitions"]
    if "test" in partitions and "train" in partitions:    # one official split (FERV39k)
        return [p for p in partitions if p != "test"], "test"
    test = f"fold{fold}"
    if test not in partitions:
        raise ValueError(f"fold {fold}: no partition {test!r} in {', '.join(partitions)}")
    return [p for p in partitions if p != test], test


def is_validation(key: str, fraction: float, seed: int) -> bool:
    """A stable pseudo-random choice of validation clips among the training partitions."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def tsn_indices(num: int, count: int, train: bool, rng: random.Random) -> np.ndarray:
    """`count` frame indices: one per equal segment (random in training, the centre in evaluation);
    a clip shorter than `count` keeps all its frames and repeats the last."""
    if num < count:
        return np.concatenate([np.arange(num), np.full(count - num, num - 1)]).astype(np.int64)
    edges = np.linspace(0, num, count + 1)
    if train:
        picks = [rng.uniform(a, b) for a, b in zip(edges[:-1], edges[1:])]
    else:
        picks = (edges[:-1] + edges[1:]) / 2
    return np.minimum(np.floor(picks), num - 1).astype(np.int64)


def random_resized_crop(size: int, scale: tuple[float, float], rng: random.Random) -> tuple[float, float, float, float]:
    """A crop box (x0, y0, w, h) as fractions of the frame: area in `scale`, aspect ratio 3/4..4/3."""
    for _ in range(10):
        area = rng.uniform(*scale)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = math.sqrt(area * ratio), math.sqrt(area / ratio)
        if w <= 1 and h <= 1:
            return rng.uniform(0, 1 - w), rng.uniform(0, 1 - h), w, h
    return 0.0, 0.0, 1.0, 1.0


def colour_masks(masks: np.ndarray) -> np.ndarray:
    """T×H×W labels -> T×H×W×3 uint8 colour images."""
    return PARSING_PALETTE[np.minimum(masks, len(PARSING_PALETTE) - 1)]


def draw_landmarks(points: np.ndarray, size: int) -> np.ndarray:
    """T×68×2 points (pixels of a size×size image) -> T×size×size×3 uint8 drawings."""
    out = np.zeros((len(points), size, size, 3), np.uint8)
    thickness = max(1, size // 112)
    for image, frame_points in zip(out, points):
        if not np.isfinite(frame_points).all():
            continue
        for part, closed, colour in _PARTS:
            line = np.round(frame_points[list(part)] * 16).astype(np.int32)
            cv2.polylines(image, [line], closed, colour, thickness, cv2.LINE_AA, 4)
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


def to_model_inputs(batch: dict, device: torch.device | str, non_blocking: bool = True) -> dict:
    """A batch from the loader -> what the model reads: every tensor on `device` (asynchronously from
    pinned memory) and the uint8 images (`IMAGE_KEYS`) converted to CLIP-normalised float32 there.
    Image tensors that are floating point already are taken as normalised and only moved."""
    device = torch.device(device)
    out = {}
    for key, value in batch.items():
        if torch.is_tensor(value):
            value = value.to(device, non_blocking=non_blocking)
            if key in IMAGE_KEYS and value.dtype == torch.uint8:
                value = clip_normalise(value)
        out[key] = value
    return out


def decode_bgr(clip: ClipSample, indices: np.ndarray) -> list[np.ndarray]:
    """The JPEG frames at `indices` decoded as H×W×3 BGR arrays, each distinct frame once. What
    `ClipSample.frames` decodes, without its conversion to RGB and its stacking into one array: the
    loader resizes frame by frame and swaps the channels when it splits them into planes."""
    decoded: dict[int, np.ndarray] = {}
    for i in map(int, indices):
        if i not in decoded:
            bgr = cv2.imdecode(np.frombuffer(clip.frame_jpeg(i), np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ShardFormatError(f"sample {clip.key}: frame {i} is not a decodable JPEG")
            decoded[i] = bgr
    return [decoded[int(i)] for i in indices]


class ClipTransform:
    """ClipSample -> training/evaluation example (see the module docstring)."""

    def __init__(self, config: DataConfig, classes: list[str], train: bool):
        self.config, self.train = config, train
        self.class_index = {c: i for i, c in enumerate(classes)}

    def __call__(self, clip: ClipSample, rng: random.Random) -> dict:
        c = self.config
        indices = tsn_indices(clip.num_frames, c.num_frames, self.train, rng)
        frames = decode_bgr(clip, indices)
        size = frames[0].shape[1]
        landmarks = clip.landmarks[indices].astype(np.float32).copy()
        masks = clip.masks(indices) if c.use_masks else None
        box, flip = self.crop_box(size, rng)
        interpolation = cv2.INTER_AREA if box[2] > c.image_size else cv2.INTER_LINEAR
        # landmarks follow the same crop, resize and flip
        landmarks[..., 0] = (landmarks[..., 0] - box[0]) * c.image_size / box[2]
        landmarks[..., 1] = (landmarks[..., 1] - box[1]) * c.image_size / box[3]
        if flip:
            landmarks = mirror_landmarks(landmarks, c.image_size)
        example = {"frames": torch.from_numpy(self.crop_frames(frames, box, flip, interpolation)),
                   "label": self.class_index[clip.label], "key": clip.key, "description": clip.description or ""}
        if c.use_masks:
            if masks is None:   # a shard without masks: an empty map
                empty = np.zeros((len(indices), c.image_size, c.image_size), np.uint8)
                example["masks"] = torch.from_numpy(self.crop_masks(empty, (0, 0, c.image_size, c.image_size), False))
            else:
                example["masks"] = torch.from_numpy(self.crop_masks(masks, box, flip))
        if c.use_landmarks:
            example["landmarks"] = to_chw(draw_landmarks(landmarks, c.image_size))
        return example

    def crop_box(self, size: int, rng: random.Random) -> tuple[tuple[int, int, int, int], bool]:
        """The crop (x, y, w, h) in pixels of a size×size clip, and whether to flip it: random resized
        crop and flip in training, the whole frame in evaluation. One draw per clip, for every frame."""
        c = self.config
        x0, y0, w, h = random_resized_crop(size, c.crop_scale, rng) if self.train else (0.0, 0.0, 1.0, 1.0)
        flip = self.train and c.flip and rng.random() < 0.5
        box = (int(round(x0 * size)), int(round(y0 * size)), max(1, int(round(w * size))), max(1, int(round(h * size))))
        return box, flip

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
            labels = self._resize(mask, box, flip, cv2.INTER_NEAREST)
            for lut, plane in zip(luts, planes):
                cv2.LUT(labels, lut, dst=plane)
        return out


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
        train_parts, test_part = fold_partitions(self.index, config.fold)
        self.partitions = [test_part] if split == "test" else train_parts
        self.shards = [str(p) for p in list_shards(config.shards, self.partitions)]
        if not self.shards:
            raise FileNotFoundError(f"no shards for {split} ({', '.join(self.partitions)}) in {config.shards}")
        self.transform = ClipTransform(config, self.classes, train=split == "train")
        self.epoch = 0
        self.skips = SkipCounter()

    def __len__(self) -> int:
        """Clips in this split, from the dataset index (the validation share is an estimate)."""
        total = sum(self.index["samples"][p] for p in self.partitions)
        if self.split == "test":
            return total
        val = int(round(total * self.config.val_fraction))
        return val if self.split == "val" else total - val

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _keep(self, key: str) -> bool:
        if self.split == "test":
            return True
        return is_validation(key, self.config.val_fraction, self.config.seed) == (self.split == "val")

    def __iter__(self) -> Iterator[dict]:
        # Training shards in the epoch's permutation, the same in every process; then this DDP rank's
        # and loader worker's share, by the shard reader's one rule.
        urls = shards_for_this_process(self.shards, self.config.seed, self.epoch, shuffle=self.split == "train")
        if not urls:
            return
        worker = torch.utils.data.get_worker_info()
        worker_id = worker.id if worker else 0
        rng = random.Random(hash((self.config.seed, self.epoch, worker_id)))
        dataset = wds.WebDataset(urls, shardshuffle=False, handler=self.skips, empty_check=False,
                                 nodesplitter=None, workersplitter=None)
        samples = (raw for raw in dataset if self._keep(str(raw.get("__key__", ""))))
        if self.split == "train" and self.config.shuffle_buffer > 1:
            samples = shuffled(samples, self.config.shuffle_buffer, random.Random(f"{self.config.seed}:{self.epoch}:{worker_id}"))
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
                yield {**example, "worker": worker_id, "skipped": self.skips.skipped}


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
             # bad samples skipped so far by the worker that made this batch (one worker per batch)
             "worker": examples[-1].get("worker", 0), "skipped": examples[-1].get("skipped", 0)}
    for name in IMAGE_KEYS:
        if name in examples[0]:
            batch[name] = torch.utils.data.default_collate([e[name] for e in examples])
    return batch


def make_loader(config: DataConfig, split: str, classes: list[str] | None = None) -> torch.utils.data.DataLoader:
    dataset = ShardClips(config, split, classes)
    return torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, num_workers=config.workers,
                                       collate_fn=collate, persistent_workers=False,
                                       pin_memory=torch.cuda.is_available())
