"""Which frames of a clip the loader reads: the face frames, and one of two sampling rules over them.

Face frames. The sampler draws only from the frames that show the face (`face_frames`): those the
pipeline flags with `face_detected`, or that carry a landmark fit (`landmarks_conf` > 0). The
pipeline gives a frame without a confirmed face `face_detected` false and `landmarks_conf` 0
(docs/shard-format.md), so a faceless stretch in the middle of a clip (a cut away, a hand over
the face) is never drawn; the rule picks from the face-frame subsequence as if it were the clip.
Shards written before the pipeline confirmed faces flag only the frames its detector searched and
fill the others in with landmark fits, which the second condition keeps. A clip with no face frame
at all falls back to every frame, and the loader counts and logs it.

Rules (`train_sampling`), over n frames (the face frames), for `count` = 16 frames:

- "segments" (ours): the clip cut into `count` equal segments (fractional edges), one frame drawn
  uniformly in each in training; the centre frame of each in evaluation. Every frame can be drawn.
- "dferclip" (DFER-CLIP's `dataloader/video_dataloader.py`, `_get_train_indices` with
  `duration=1`): `count` segments of `n // count` frames from frame 0, one frame uniformly in each,
  so the last `n mod count` frames are never drawn and a clip of `count`..2·`count`-1 frames always
  gives frames 0..`count`-1. Evaluation is the same as "segments" (its `_get_test_indices` takes
  `int(tick / 2 + tick * k)` with `tick = n / count`, the centre of equal segments).

Both rules keep every frame of a clip shorter than `count` and repeat its last frame (the reference
pads with `np.pad(..., 'edge')`).
"""

from __future__ import annotations

import random

import numpy as np

TRAIN_SAMPLINGS = ("segments", "dferclip")


def _short_clip(num: int, count: int) -> np.ndarray:
    """All `num` frames, the last repeated up to `count`."""
    return np.concatenate([np.arange(num), np.full(count - num, num - 1)]).astype(np.int64)


def tsn_indices(num: int, count: int, train: bool, rng: random.Random) -> np.ndarray:
    """`count` frame indices: one per equal segment (random in training, the centre in evaluation);
    a clip shorter than `count` keeps all its frames and repeats the last ("segments")."""
    if num < count:
        return _short_clip(num, count)
    edges = np.linspace(0, num, count + 1)
    if train:
        picks = [rng.uniform(a, b) for a, b in zip(edges[:-1], edges[1:])]
    else:
        picks = (edges[:-1] + edges[1:]) / 2
    return np.minimum(np.floor(picks), num - 1).astype(np.int64)


def dferclip_train_indices(num: int, count: int, rng: random.Random) -> np.ndarray:
    """DFER-CLIP's training draw ("dferclip"): segments of `num // count` frames from frame 0, one
    frame uniformly in each (one `rng.randrange` per segment, in order); a clip shorter than `count`
    keeps all its frames and repeats the last."""
    length = num // count
    if length == 0:
        return _short_clip(num, count)
    return np.array([k * length + rng.randrange(length) for k in range(count)], np.int64)


def sample_indices(num: int, count: int, train: bool, rng: random.Random, rule: str = "segments") -> np.ndarray:
    """`count` indices into `num` frames by `rule` (module docstring); evaluation is the same for both."""
    if rule not in TRAIN_SAMPLINGS:
        raise ValueError(f"train_sampling must be one of {', '.join(TRAIN_SAMPLINGS)}, got {rule!r}")
    if num < 1:
        raise ValueError("a clip with no frames cannot be sampled")
    if train and rule == "dferclip":
        return dferclip_train_indices(num, count, rng)
    return tsn_indices(num, count, train, rng)


def face_frames(face_detected: np.ndarray, landmarks_conf: np.ndarray) -> np.ndarray:
    """Indices of the frames that show the face: flagged `face_detected`, or with a landmark fit."""
    return np.flatnonzero(np.asarray(face_detected, bool) | (np.asarray(landmarks_conf, np.float32) > 0))


def clip_frame_indices(face_detected: np.ndarray, landmarks_conf: np.ndarray, count: int, train: bool,
                       rng: random.Random, rule: str = "segments") -> tuple[np.ndarray, bool]:
    """(`count` frame indices drawn by `rule` from the clip's face frames, whether the clip had none):
    with no face frame the rule runs over every frame."""
    faces = face_frames(face_detected, landmarks_conf)
    faceless = len(faces) == 0
    if faceless:
        faces = np.arange(len(face_detected))
    return faces[sample_indices(len(faces), count, train, rng, rule)], faceless
