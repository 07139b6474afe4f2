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
    result = zero_shot("sample", "tiny", 1, {"shards": str(out), "runs_dir": str(tmp_path), "workers": 0})
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
    # `variation` scales the nuisances: at 0 every clip is framed and lit alike
    def spread(variation):
        frames = [make_pair(identity, describer, 0, i, variation=variation).frames.astype(float) for i in range(12)]
        return np.std([f.mean() for f in frames]), np.mean([np.abs(f - frames[0]).mean() for f in frames[1:]])
    (light_0, diff_0), (light_1, diff_1) = spread(0.0), spread(1.0)
    assert light_0 < light_1 / 3 and diff_0 < diff_1 / 2


def test_pretraining_writes_a_clip_checkpoint_that_loads_like_openais(tmp_path):
    from trainer.pretrain_tiny import pretrain

    out = tmp_path / "tiny-synthetic.pt"
    record = pretrain(out, seed=3, pairs=32, clean_pairs=16, eval_pairs=16, epochs=1, clean_steps=1, batch_size=16,
                      threads=1, log=lambda message: None)
    model, resolution = load_clip(out)
    assert resolution == 64 and record["sha256"] and [h["phase"] for h in record["history"]] == ["clean", "epoch 1/1"]
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["settings"]["seed"] == 3 and np.isfinite(saved["final"]["loss"])
    assert all(0.0 <= saved["final"][kind]["zero_shot_uar"] <= 1.0 for kind in ("clean", "varied"))
