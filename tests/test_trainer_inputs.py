"""The loader yields uint8 images and `to_model_inputs` normalises them where the batch enters the
model: the values the model receives are exactly those of the former in-worker float path."""

import random

import cv2
import numpy as np
import pytest
import torch

from pipeline.shards.layout import MIRROR
from pipeline.shards.reader import read_shard
from trainer.data import (CLIP_MEAN, CLIP_STD, MASK_MIRROR, ClipTransform, DataConfig, ShardClips, clip_normalise,
                          collate, colour_masks, draw_landmarks, make_loader, random_resized_crop, to_chw,
                          to_model_inputs, tsn_indices)


def old_normalise(images: np.ndarray) -> torch.Tensor:
    """The formula the loader workers used to apply: T×H×W×3 uint8 -> T×3×H×W float32."""
    x = (images.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def old_transform(config: DataConfig, clip, rng: random.Random, train: bool) -> tuple[dict, bool]:
    """ClipTransform as it was before the loader yielded uint8 (crop and flip as views, colour and
    mirror with numpy indexing, float conversion and normalisation in the worker); and whether it flipped."""
    c = config
    indices = tsn_indices(clip.num_frames, c.num_frames, train, rng)
    frames = clip.frames(indices)
    size = frames.shape[1]
    landmarks = clip.landmarks[indices].astype(np.float32).copy()
    masks = clip.masks(indices)
    x0, y0, w, h = random_resized_crop(size, c.crop_scale, rng) if train else (0.0, 0.0, 1.0, 1.0)
    flip = train and c.flip and rng.random() < 0.5
    box = (int(round(x0 * size)), int(round(y0 * size)), max(1, int(round(w * size))), max(1, int(round(h * size))))

    def crop(images: np.ndarray, interpolation: int) -> np.ndarray:
        x, y, w, h = box
        out = np.stack([cv2.resize(im[y:y + h, x:x + w], (c.image_size, c.image_size), interpolation=interpolation)
                        for im in images])
        return out[:, :, ::-1] if flip else out

    frames = crop(frames, cv2.INTER_AREA if box[2] > c.image_size else cv2.INTER_LINEAR)
    landmarks[..., 0] = (landmarks[..., 0] - box[0]) * c.image_size / box[2]
    landmarks[..., 1] = (landmarks[..., 1] - box[1]) * c.image_size / box[3]
    if flip:
        landmarks = landmarks[:, MIRROR]
        landmarks[..., 0] = (c.image_size - 1) - landmarks[..., 0]
    masks = crop(masks, cv2.INTER_NEAREST)
    if flip:
        masks = MASK_MIRROR[masks]
    return {"frames": old_normalise(frames), "masks": old_normalise(colour_masks(masks)),
            "landmarks": old_normalise(draw_landmarks(landmarks, c.image_size))}, flip


def test_clip_normalise_equals_the_former_formula_for_every_value():
    values = np.arange(256, dtype=np.uint8)
    images = np.stack(np.meshgrid(values, values, values[::-1], indexing="ij"), -1)[:4]   # 4×256×256×3
    expected = old_normalise(images)
    chw = to_chw(images)
    assert chw.dtype == torch.uint8 and torch.equal(chw, torch.from_numpy(images).permute(0, 3, 1, 2))
    assert torch.equal(to_chw(images[:, :, ::-1]), torch.from_numpy(images[:, :, ::-1].copy()).permute(0, 3, 1, 2))
    assert torch.equal(clip_normalise(chw), expected)                  # bit for bit, not only close
    batch = to_model_inputs({"frames": chw[None], "labels": torch.tensor([1]), "keys": ["a"]}, "cpu")
    assert batch["frames"].dtype == torch.float32 and torch.equal(batch["frames"][0], expected)
    assert batch["labels"].tolist() == [1] and batch["keys"] == ["a"]
    # images already float (a batch built by hand) pass through unchanged
    already = torch.randn(1, 2, 3, 8, 8)
    assert to_model_inputs({"frames": already}, "cpu")["frames"] is already


@pytest.mark.parametrize("image_size", [64, 224])
def test_the_model_receives_what_the_in_worker_normalisation_produced(sample_shards, image_size):
    """uint8 loader output + to_model_inputs == the former float path, frames, masks and landmarks,
    with and without a flip, in training (random crop) and evaluation."""
    out, _ = sample_shards
    config = DataConfig(shards=str(out), fold=1, num_frames=8, image_size=image_size, workers=0)
    classes = ShardClips(config, "test").classes
    clips = [clip for shard in sorted(out.glob("fold1-*.tar")) for clip in read_shard(shard)][:3]
    flips = set()
    for train in (True, False):
        transform = ClipTransform(config, classes, train=train)
        for seed in range(4 if train else 1):
            for clip in clips:
                new = transform(clip, random.Random(seed))
                assert all(new[k].dtype == torch.uint8 for k in ("frames", "masks", "landmarks"))
                inputs = to_model_inputs(collate([new]), "cpu")
                expected, flipped = old_transform(config, clip, random.Random(seed), train)
                flips.add(flipped)
                for key, tensor in expected.items():
                    assert torch.equal(inputs[key][0], tensor), (clip.key, key, train, seed)
    assert flips == {True, False}


def test_loader_workers_send_uint8_batches(sample_shards):
    out, _ = sample_shards
    config = DataConfig(shards=str(out), fold=1, num_frames=4, image_size=32, batch_size=2, workers=1,
                        use_masks=False, use_landmarks=False)
    batch = next(iter(make_loader(config, "test")))
    assert batch["frames"].dtype == torch.uint8 and batch["frames"].shape == (2, 4, 3, 32, 32)
    assert "masks" not in batch and to_model_inputs(batch, "cpu")["frames"].dtype == torch.float32
