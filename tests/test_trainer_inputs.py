"""The loader yields uint8 images and `to_model_inputs` normalises them where the batch enters the
model: the values the model receives are exactly those of the former in-worker float path."""

import dataclasses
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
    # (landmarks then took pixel corners at integers here, half a source pixel off what cv2.resize does
    # to the pixels; the only change since, made on both sides)
    landmarks[..., 0] = (landmarks[..., 0] - box[0] + 0.5) * c.image_size / box[2] - 0.5
    landmarks[..., 1] = (landmarks[..., 1] - box[1] + 0.5) * c.image_size / box[3] - 0.5
    if flip:
        landmarks = landmarks[:, MIRROR]
        landmarks[..., 0] = (c.image_size - 1) - landmarks[..., 0]
    masks = crop(masks, cv2.INTER_NEAREST_EXACT)   # (was INTER_NEAREST, half a source pixel off: changed on both sides)
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


# --- DFER-CLIP's reference augmentation (FIDELITY D7): brightness, rotation, unit normalisation ---

DOT = (165.0, 62.0)     # a point well off the centre of a 224×224 frame: a rotation of 4° moves it ~5 px
NOSE = 10               # PARSING_LABELS.index("nose"), the same after a flip


def dot_clip(size: int = 224, frames: int = 4, grey: int = 0):
    """A clip whose frames are `grey` with a white disc at DOT, whose masks label the same disc "nose",
    and whose 68 landmarks all sit at DOT."""
    from pipeline.shards.format import make_sample

    image = np.full((size, size, 3), grey, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    centre = (int(DOT[0]), int(DOT[1]))
    cv2.circle(image, centre, 5, (255, 255, 255), -1)
    cv2.circle(mask, centre, 5, NOSE, -1)
    return make_sample(
        "dot", dict(dataset="sample", clip_id="dot", label="happiness", partition="fold1",
                    source=dict(path="dot.mp4", fps=25.0, frames=frames)),
        frames=np.stack([image] * frames), timestamps=np.arange(frames) / 25.0,
        boxes=np.tile([0.0, 0.0, size, size], (frames, 1)), face_detected=np.ones(frames, bool),
        landmarks=np.tile(np.array(DOT, np.float32), (frames, 68, 1)), landmarks_conf=np.ones(frames),
        masks=np.stack([mask] * frames))


def centroid(weights: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(weights)
    w = weights[ys, xs].astype(np.float64)
    return np.array([np.sum(xs * w), np.sum(ys * w)]) / w.sum()


def expected_point(transform: ClipTransform, clip, seed: int) -> tuple[np.ndarray, object]:
    """DOT moved by the augmentation `transform` draws with Random(seed): rotation, crop, flip; by hand."""
    import math

    rng = random.Random(seed)
    size = transform.config.image_size
    tsn_indices(clip.num_frames, transform.config.num_frames, True, rng)   # the draws before the augmentation
    aug = transform.augmentation(224, rng)
    x, y = DOT[0] - 111.5, DOT[1] - 111.5
    a = math.radians(aug.angle)          # counter-clockwise on screen, y pointing down
    x, y = x * math.cos(a) + y * math.sin(a) + 111.5, -x * math.sin(a) + y * math.cos(a) + 111.5
    bx, by, bw, bh = aug.box
    x, y = (x - bx + 0.5) * size / bw - 0.5, (y - by + 0.5) * size / bh - 0.5
    return np.array([size - 1 - x if aug.flip else x, y]), aug


def test_rotation_is_pils_and_frames_masks_landmarks_agree_after_rotation_crop_and_flip():
    from PIL import Image

    from trainer.data import rotate_image, rotation_matrix

    # the pixels: PIL's Image.rotate(angle) default (nearest, about the centre, black fill, same size)
    image = np.random.default_rng(0).integers(0, 256, (224, 200, 3), dtype=np.uint8)
    for angle in (4.0, -2.7, 0.37):
        ours = rotate_image(image, rotation_matrix(angle, 200, 224))
        pil = np.asarray(Image.fromarray(image).rotate(angle))
        assert (ours == pil).all(-1).mean() > 0.995     # all but rounding ties (OpenCV: 1/1024 pixel)
    # the three inputs of a clip stay aligned: the dot's centroid in the frames, in the masks and in the
    # landmark drawing, and the point computed by hand, through rotation + crop + flip
    clip = dot_clip()
    config = DataConfig(shards="unused", num_frames=4, image_size=224, crop_scale=(0.08, 1.0), rotation=4.0)
    transform = ClipTransform(config, ["happiness"], train=True)
    plain = ClipTransform(dataclasses.replace(config, rotation=0.0), ["happiness"], train=True)
    checked, flips, moved = 0, set(), 0
    for seed in range(60):
        point, aug = expected_point(transform, clip, seed)
        if not (12 <= point.min() and point.max() <= 224 - 12):
            continue                                        # the crop left the dot out
        example = transform(clip, random.Random(seed))
        for t in range(4):
            frame = example["frames"][t].numpy().max(0)
            mask = (example["masks"][t].numpy() != 0).any(0)
            drawn = example["landmarks"][t].numpy().max(0)
            for name, found in (("frame", centroid(np.where(frame > 128, frame, 0))),
                                ("mask", centroid(mask)), ("landmarks", centroid(drawn))):
                assert np.abs(found - point).max() < 1.0, (seed, name, found, point, aug)
        unrotated = centroid(plain(clip, random.Random(seed))["landmarks"][0].numpy().max(0))
        moved += np.abs(unrotated - point).max() > 1.5      # the rotation did move it
        checked, flips = checked + 1, flips | {aug.flip}
        assert -4.0 <= aug.angle <= 4.0 and aug.angle != 0.0 and aug.brightness == 1.0
    assert checked >= 10 and flips == {True, False} and moved >= checked // 2
    # evaluation never rotates
    test_example = ClipTransform(config, ["happiness"], train=False)(clip, random.Random(0))
    assert np.abs(centroid(test_example["landmarks"][0].numpy().max(0)) - DOT).max() < 1.0


def test_brightness_factor_range_and_effect():
    from PIL import Image, ImageEnhance

    from trainer.data import brightness_lut

    # the table is PIL's ImageEnhance.Brightness (torchvision's adjust_brightness on PIL images), exactly
    values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, -1)
    for factor in (0.0, 0.5, 0.77, 1.0, 1.234, 1.5, 2.5):
        expected = np.asarray(ImageEnhance.Brightness(Image.fromarray(values)).enhance(factor))
        assert np.array_equal(cv2.LUT(values, brightness_lut(factor)), expected), factor
    for brightness, low, high in ((0.5, 0.5, 1.5), (0.2, 0.8, 1.2), (1.5, 0.0, 2.5)):
        transform = ClipTransform(DataConfig(shards="unused", brightness=brightness), ["happiness"], train=True)
        factors = [transform.augmentation(224, random.Random(seed)).brightness for seed in range(2000)]
        assert low <= min(factors) < low + 0.01 and high - 0.01 < max(factors) <= high, brightness
        assert abs(np.mean(factors) - (low + high) / 2) < 0.03
    assert ClipTransform(DataConfig(shards="unused", brightness=0.5), ["happiness"],
                         train=False).augmentation(224, random.Random(0)).brightness == 1.0
    # on a clip: the frames (grey 100 and the dot) scaled by the drawn factor; masks and landmarks as without
    clip = dot_clip(grey=100)
    config = DataConfig(shards="unused", num_frames=4, image_size=224, brightness=0.5)
    plain = ClipTransform(dataclasses.replace(config, brightness=0.0), ["happiness"], train=True)
    transform = ClipTransform(config, ["happiness"], train=True)
    for seed in range(6):
        _, aug = expected_point(transform, clip, seed)
        example, without = transform(clip, random.Random(seed)), plain(clip, random.Random(seed))
        lut = brightness_lut(aug.brightness)
        # applied before the crop's interpolation, as in the reference: the same as after it but on
        # the disc's edge, where the bright side saturates
        assert (example["frames"].numpy() == lut[without["frames"].numpy()]).mean() > 0.97
        assert torch.equal(example["masks"], without["masks"]) and torch.equal(example["landmarks"], without["landmarks"])
        grey = int(np.median(example["frames"].numpy()))
        assert grey == lut[int(np.median(without["frames"].numpy()))]


def test_unit_normalisation_is_x_over_255():
    from trainer.data import unit_normalise

    values = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 16, 16).expand(2, 4, 3, 16, 16)
    batch = {"frames": values, "masks": values, "landmarks": values, "labels": torch.tensor([0, 1])}
    unit = to_model_inputs(batch, "cpu", normalise="unit")
    for key in ("frames", "masks", "landmarks"):
        assert unit[key].dtype == torch.float32 and torch.equal(unit[key], values.float() / 255)
    assert unit["frames"].min() == 0 and unit["frames"].max() == 1 and torch.equal(unit_normalise(values), unit["frames"])
    assert torch.equal(to_model_inputs(batch, "cpu")["frames"], clip_normalise(values))   # the default: CLIP
    assert torch.equal(to_model_inputs(batch, "cpu", normalise="clip")["frames"], clip_normalise(values))
    with pytest.raises(ValueError, match="normalise"):
        to_model_inputs(batch, "cpu", normalise="imagenet")


def test_landmarks_drawn_as_points_over_the_face():
    """FineCLIPER's figure draws the landmarks as dots over the face; ours draws lines on black."""
    rng = np.random.default_rng(0)
    points = rng.uniform(8, 56, size=(2, 68, 2)).astype(np.float32)
    points[1] = np.nan   # a frame without landmarks keeps the face as it is
    faces = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    over = draw_landmarks(points, 64, "points_on_face", faces)
    lines = draw_landmarks(points, 64)
    assert over.shape == lines.shape == faces.shape
    assert np.array_equal(over[1], faces[1]) and not lines[1].any()
    changed = (over[0] != faces[0]).any(-1)
    assert 0.02 < changed.mean() < 0.6     # dots, not a repainted frame
    x, y = np.round(points[0, 30]).astype(int)
    assert changed[y, x]                     # each point is drawn where it is
    assert (over[0][~changed] == faces[0][~changed]).all()
    with pytest.raises(ValueError, match="frames"):
        draw_landmarks(points, 64, "points_on_face")
    with pytest.raises(ValueError, match="landmark style"):
        draw_landmarks(points, 64, "crosses")
