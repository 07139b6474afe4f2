"""Which frames the loader reads: DFER-CLIP's training rule against the reference written out here,
and face frames only (a clip whose middle frames show no face never gives one of them)."""

import random

import numpy as np
import pytest

from pipeline.shards.format import decode_sample, encode_sample, make_sample
from trainer.data import ClipTransform, DataConfig
from trainer.sampling import clip_frame_indices, sample_indices

LENGTHS = (16, 17, 20, 31, 32, 100, 300)


def reference_train_rule(n: int, segments: int, draw) -> list[int]:
    """dataloader/video_dataloader.py `_get_train_indices` with duration 1, written out again:
    average_duration = n // segments; if > 0, segment k starts at k * average_duration and one of
    its frames is drawn (`draw(m)`: uniform in 0..m-1); else (n < segments) every frame, the last
    repeated ('edge' padding). (Its middle branch, n > segments with average_duration 0, cannot
    happen with duration 1.)"""
    average = n // segments
    if average > 0:
        return [k * average + draw(average) for k in range(segments)]
    return list(range(n)) + [n - 1] * (segments - n)


def reference_test_rule(n: int, segments: int) -> list[int]:
    """`_get_test_indices` with duration 1: int(tick / 2 + tick * k), tick = n / segments."""
    if n > segments:
        tick = n / segments
        return [int(tick / 2.0 + tick * k) for k in range(segments)]
    return list(range(n)) + [n - 1] * (segments - n)


@pytest.mark.parametrize("n", LENGTHS + (5, 15))
def test_dferclip_training_frames_follow_the_reference_rule(n):
    for seed in range(20):
        ours = sample_indices(n, 16, True, random.Random(seed), "dferclip")
        theirs = reference_train_rule(n, 16, random.Random(seed).randrange)
        assert ours.tolist() == theirs, (n, seed)
    # over many draws: exactly the frames the rule can reach, each segment's every frame
    drawn = np.stack([sample_indices(n, 16, True, random.Random(seed), "dferclip") for seed in range(400)])
    average = n // 16
    if average:
        for k in range(16):
            assert set(drawn[:, k]) == set(range(k * average, (k + 1) * average)), (n, k)
        assert drawn.max() < 16 * average     # the last n mod 16 frames are never drawn
    if 16 <= n < 32:
        assert (drawn == np.arange(16)).all()   # a 16-31-frame clip always gives frames 0-15
    # evaluation: the same centre frames for both rules, and the reference's
    for rule in ("dferclip", "segments"):
        assert sample_indices(n, 16, False, random.Random(0), rule).tolist() == reference_test_rule(n, 16)


def test_our_rule_reaches_the_whole_clip():
    drawn = {int(i) for seed in range(300) for i in sample_indices(20, 16, True, random.Random(seed), "segments")}
    assert drawn == set(range(20))           # the reference never draws frames 16-19 of a 20-frame clip
    with pytest.raises(ValueError, match="train_sampling"):
        sample_indices(20, 16, True, random.Random(0), "random")


def grey_clip(face: np.ndarray, detected: np.ndarray | None = None) -> object:
    """A clip of len(face) flat grey frames, frame i at grey level 10 + 4 i, through the shard format's
    bytes and back; `face` marks the frames that show the face (the others: face_detected false,
    landmarks_conf 0, as the pipeline marks them), `detected` the detector's flag where it differs."""
    n, size = len(face), 32
    frames = np.stack([np.full((size, size, 3), 10 + 4 * i, np.uint8) for i in range(n)])
    sample = make_sample(
        "cut", dict(dataset="sample", clip_id="cut", label="happiness", partition="fold1",
                    source=dict(path="cut.mp4", fps=25.0, frames=n)),
        frames=frames, timestamps=np.arange(n) / 25.0, boxes=np.tile([0.0, 0.0, size, size], (n, 1)),
        face_detected=face if detected is None else detected,
        landmarks=np.full((n, 68, 2), size / 2, np.float32), landmarks_conf=np.where(face, 0.9, 0.0),
        masks=np.zeros((n, size, size), np.uint8))
    return decode_sample(encode_sample(sample))


def frames_read(example) -> list[int]:
    """The frame numbers of an example's frames, from their grey level."""
    levels = example["frames"].float().mean(dim=(1, 2, 3)).numpy()
    return [int(round((level - 10) / 4)) for level in levels]


@pytest.mark.parametrize("rule", ["dferclip", "segments"])
def test_faceless_middle_frames_are_never_drawn(rule):
    face = np.ones(60, bool)
    face[20:36] = False                      # a cut away from the face in the middle of the clip
    clip = grey_clip(face)
    config = DataConfig(shards="unused", num_frames=16, image_size=32, train_sampling=rule,
                        use_masks=False, use_landmarks=False)
    faces = set(np.flatnonzero(face))
    for train in (True, False):
        transform = ClipTransform(config, ["happiness"], train=train)
        for seed in range(25):
            example = transform(clip, random.Random(seed))
            read = frames_read(example)
            assert set(read) <= faces and read == example["frame_indices"], (train, seed, read)
        assert transform.faceless.count == 0
    # the rule runs over the 44 face frames as if they were the clip: frames 0-19, then 36-59
    picks = clip_frame_indices(face, np.where(face, 0.9, 0.0), 16, False, random.Random(0), rule)[0]
    assert picks.tolist() == np.flatnonzero(face)[sample_indices(44, 16, False, random.Random(0), rule)].tolist()


def test_a_clip_with_no_face_frame_falls_back_to_every_frame_and_is_counted(caplog):
    none = np.zeros(24, bool)
    transform = ClipTransform(DataConfig(shards="unused", num_frames=8, image_size=32, use_masks=False,
                                         use_landmarks=False), ["happiness"], train=True)
    example = transform(grey_clip(none), random.Random(0))
    assert len(set(frames_read(example))) == 8 and transform.faceless.count == 1
    assert "has no face frame" in caplog.text
    # shards written before faces were confirmed: the detector's flag only on its searched frames, a
    # landmark fit on every frame; every frame stays a face frame
    searched = np.arange(24) % 5 == 0
    transform = ClipTransform(DataConfig(shards="unused", num_frames=8, image_size=32, use_masks=False,
                                         use_landmarks=False), ["happiness"], train=False)
    example = transform(grey_clip(np.ones(24, bool), detected=searched), random.Random(0))
    assert frames_read(example) == sample_indices(24, 8, False, random.Random(0)).tolist()
