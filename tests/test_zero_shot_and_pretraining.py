"""The zero-shot baseline (`make zero-shot`) and the tiny CLIP's pretraining (`make pretrain-tiny`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainer.clip_loader import load_clip, tiny_clip, tokenize
from trainer.models import build_model
from trainer.zero_shot import NEUTRAL, zero_shot

CLASSES = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]


def test_neutral_fineclip_is_exactly_the_plain_clip_zero_shot_classifier():
    """Untrained, with NEUTRAL settings, FineCLIPER's logits are CLIP's: mean frame embedding vs prompts."""
    model = build_model("tiny-random", CLASSES, **NEUTRAL).eval()
    clip = tiny_clip(seed=0)                                  # build_model's random tiny CLIP (seed 0)
    frames = torch.randn(3, 4, 3, 64, 64)
    with torch.no_grad():
        logits = model({"frames": frames})["logits"]
        video = F.normalize(clip.encode_image(frames.flatten(0, 1)).view(3, 4, -1).mean(1), dim=-1)
        prompts = F.normalize(clip.encode_text(tokenize([f"A person with an expression of {c}." for c in CLASSES])),
                              dim=-1)
    assert torch.allclose(logits, video @ prompts.T / model.config.temperature, atol=1e-4)


def test_zero_shot_command_scores_the_test_fold(sample_shards, tmp_path):
    out, _ = sample_shards
    result = zero_shot("sample", "tiny", 1, {"shards": str(out), "runs_dir": str(tmp_path), "workers": 0},
                       name="sample-tiny")
    saved = json.loads((tmp_path / "sample-tiny-zeroshot-fold1" / "metrics.json").read_text())
    assert saved["protocol"] == "zero-shot" and saved["uar"] == result["uar"]
    assert saved["samples"] == 8 and saved["unscored"] == 1     # fold 1: 7 clips + the truncated one, wrong
    with pytest.raises(ValueError, match="FineCLIPER"):
        zero_shot("sample", "tiny-dferclip", 1, {"shards": str(out), "runs_dir": str(tmp_path)})


def test_pretraining_pairs_are_deterministic_and_captioned_like_alt_text():
    from pipeline.describers.geometric import GeometricDescriber
    from trainer.synthetic_pairs import load_identity, make_pair

    identity, describer = load_identity(), GeometricDescriber()
    a, b = make_pair(identity, describer, 0, 5), make_pair(identity, describer, 0, 5)
    assert np.array_equal(a.frames, b.frames) and a.caption == b.caption
    assert a.frames.shape == (8, 64, 64, 3) and a.frames.dtype == np.uint8
    assert not np.array_equal(a.frames, make_pair(identity, describer, 1, 5).frames)   # another seed, another clip
    pairs = [make_pair(identity, describer, 0, i) for i in range(40)]
    named = [p for p in pairs if p.label and p.label in p.caption]
    assert 0 < len(named) < len([p for p in pairs if p.label])        # the name in only some captions
    assert not any(c in p.caption for p in pairs if p.label is None for c in CLASSES)   # mixtures: never a name
    assert len({p.caption for p in pairs}) > 30
    # `variation` scales the framing baked into the frames: at 0 every clip is framed alike
    def spread(variation):
        frames = [make_pair(identity, describer, 0, i, variation=variation).frames.astype(float) for i in range(12)]
        return np.mean([np.abs(f - frames[0]).mean() for f in frames[1:]])
    assert spread(0.0) < spread(1.0) / 1.5
    # landmark drawings: the same clip's motion on black, the same caption
    drawn = make_pair(identity, describer, 0, 5, drawing=True)
    assert drawn.caption == a.caption and drawn.frames.shape == a.frames.shape
    assert (drawn.frames == 0).mean() > 0.8 and drawn.frames.max() > 200


def test_light_is_drawn_per_clip_and_scaled_by_strength():
    from trainer.synthetic_pairs import light_jitter

    clips = torch.full((64, 4, 3, 8, 8), 128, dtype=torch.uint8)
    none = light_jitter(clips, torch.Generator().manual_seed(0), strength=0.0)
    assert torch.equal(none, clips.float())
    lit = light_jitter(clips, torch.Generator().manual_seed(0))
    assert torch.equal(lit, light_jitter(clips, torch.Generator().manual_seed(0)))      # seeded
    assert torch.equal(lit, lit[:, :1].expand_as(lit))                                  # one draw per clip
    assert 15 < lit.mean(dim=(1, 2, 3, 4)).std() < 60 and lit.min() >= 0 and lit.max() <= 255
    # per-clip strength: a clip at 0 is left as it was
    mixed = light_jitter(clips, torch.Generator().manual_seed(0), strength=torch.tensor([0.0, 1.0]).repeat(32))
    assert torch.equal(mixed[0::2], clips[0::2].float()) and not torch.equal(mixed[1::2], clips[1::2].float())


def test_pretraining_writes_a_clip_checkpoint_that_loads_like_openais(tmp_path):
    from trainer.pretrain_tiny import curriculum, pretrain

    out = tmp_path / "tiny-synthetic.pt"
    record = pretrain(out, seed=3, pairs=48, steps=4, ramp_steps=2, eval_pairs=16, eval_every=2, batch_size=16,
                      drawing_share=0.3, threads=1, log=lambda message: None)
    model, resolution = load_clip(out)
    assert resolution == 64 and record["sha256"] and [h["step"] for h in record["history"]] == [2, 4]
    assert [h["nuisance"] for h in record["history"]] == [1.0, 1.0] and curriculum(1, 2) == 0.5
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["settings"]["seed"] == 3 and np.isfinite(saved["final"]["loss"])
    assert all(0.0 <= saved["final"][kind]["zero_shot_uar"] <= 1.0 for kind in ("clean", "varied", "drawn"))


def test_the_shipped_tiny_clip_loads_by_name_and_knows_more_than_a_random_one():
    """The checkpoint in the package: hash-checked by name, and its zero-shot accuracy on held-out
    synthetic clips (pretraining's own stream, seed + 10,000) clearly above chance, unlike a random CLIP."""
    from trainer.clip_loader import random_clip
    from trainer.pretrain_tiny import EVAL_SEED_OFFSET, evaluate, generate_pairs

    shipped, resolution = load_clip("tiny-synthetic")
    assert resolution == 64
    clips, captions, labels = generate_pairs(EVAL_SEED_OFFSET, 96, name_rate=0.0, variation=0.0, workers=1)
    tokens = tokenize(captions)
    trained = evaluate(shipped, clips, tokens, labels, CLASSES, batch=96)
    untrained = evaluate(random_clip("tiny-synthetic"), clips, tokens, labels, CLASSES, batch=96)
    assert trained["zero_shot_uar"] > 0.4 and untrained["zero_shot_uar"] < 0.25
