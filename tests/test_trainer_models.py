"""The trainer's models: CLIP loading, adapters, FineCLIPER and DFER-CLIP, with random weights, offline."""

from __future__ import annotations

import os
import re
import shutil

import pytest
import torch
import yaml

from pipeline.inputs.datasets import DATASETS
from pipeline.weights import OFFLINE_VARIABLES
from trainer import clip_loader
from trainer.adapters import AdaptedCLIP
from trainer.clip_loader import ClipWeightsError, clip_model_module, load_clip, tiny_clip, tokenize
from pipeline.resources import PROMPTS_DIR
from trainer.model_config import ModelConfig
from trainer.models import MODELS, build_model, model_config, trainable_summary

CLASSES = list(DATASETS["mafw"].classes)  # 11 classes: the largest label set
SOT, EOT = 49406, 49407


def make_batch(model, b: int = 2, t: int = 4, descriptions=("the brows go up", "the mouth opens wide")) -> dict:
    r = model.input_resolution
    g = torch.Generator().manual_seed(0)
    clip = lambda: torch.randn(b, t, 3, r, r, generator=g)  # noqa: E731
    return dict(frames=clip(), masks=clip(), landmarks=clip(), descriptions=list(descriptions)[:b],
                labels=torch.tensor([0, 3])[:b])


def trainable_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def has_grad(param) -> bool:
    return param.grad is not None and bool(param.grad.abs().sum() > 0)


# --- clip_loader ---------------------------------------------------------------------------


def test_model_table_is_the_clip_packages_own():
    import clip

    assert set(clip_loader.CLIP_URLS) == set(clip.available_models())
    assert clip_loader.expected_sha256("ViT-B/16") == "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"


def test_tokenize_rows_have_start_end_and_padding():
    rows = tokenize(["A person with an expression of happiness.", "word " * 200])
    assert rows.dtype == torch.long and rows.shape == (2, 77)
    assert (rows[:, 0] == SOT).all()
    short, long = rows
    end = int(short.argmax())
    assert short[end] == EOT and (short[end + 1:] == 0).all() and (short[1:end] > 0).all()
    assert long[-1] == EOT and (long > 0).all(), "a long text is cut and keeps its end token"
    assert tokenize("a face", context_length=16).shape == (1, 16)


@pytest.fixture(scope="module")
def tiny_reference():
    model = tiny_clip(seed=3)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    tokens = tokenize(["a face", "the brows are drawn together"])
    with torch.no_grad():
        return model, images, tokens, model.encode_image(images), model.encode_text(tokens)


@pytest.fixture()
def openai_style_cache(tmp_path, tiny_reference):
    """A cache folder holding a TorchScript archive (OpenAI's format) under the official B/16 name."""
    model, images, tokens, _, _ = tiny_reference
    path = tmp_path / "ViT-B-16.pt"
    torch.jit.save(torch.jit.trace(model, (images, tokens), check_trace=False), str(path))
    return tmp_path


def assert_same_outputs(loaded, tiny_reference):
    _, images, tokens, image_features, text_features = tiny_reference
    assert isinstance(loaded, clip_model_module().CLIP)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images), image_features)
        assert torch.equal(loaded.encode_text(tokens), text_features)


def test_load_named_checkpoint_from_cache(openai_style_cache, tiny_reference, monkeypatch):
    # The cached file is hash-checked; give the name a URL that carries this file's hash.
    real = clip_loader.file_sha256(openai_style_cache / "ViT-B-16.pt")
    url = clip_loader.CLIP_URLS["ViT-B/16"].replace(clip_loader.expected_sha256("ViT-B/16"), real)
    monkeypatch.setitem(clip_loader.CLIP_URLS, "ViT-B/16", url)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))

    loaded, resolution = load_clip("ViT-B/16", cache_dir=openai_style_cache)
    assert resolution == 64
    assert_same_outputs(loaded, tiny_reference)

    monkeypatch.setenv("CLIP_CACHE", str(openai_style_cache))
    assert_same_outputs(load_clip("ViT-B/16")[0], tiny_reference)


def test_missing_checkpoint_is_downloaded_when_allowed(openai_style_cache, tiny_reference, monkeypatch):
    for variable in OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    source = openai_style_cache / "ViT-B-16.pt"
    sha256 = clip_loader.file_sha256(source)
    url = clip_loader.CLIP_URLS["ViT-B/16"].replace(clip_loader.expected_sha256("ViT-B/16"), sha256)
    monkeypatch.setitem(clip_loader.CLIP_URLS, "ViT-B/16", url)
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        shutil.copy(source, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    cache = openai_style_cache / "fresh"
    assert_same_outputs(load_clip("ViT-B/16", cache_dir=cache)[0], tiny_reference)
    assert calls == [(url, str(cache / "ViT-B-16.pt"), sha256)], "downloaded once, with the published hash"

    def failing_download(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", failing_download)
    with pytest.raises(ClipWeightsError, match="network unreachable") as error:
        load_clip("ViT-B/32", cache_dir=cache)
    assert clip_loader.CLIP_URLS["ViT-B/32"] in str(error.value)


def test_load_checkpoint_by_path_plain_state_dict(tmp_path, tiny_reference):
    path = tmp_path / "finetuned.pt"
    torch.save(tiny_reference[0].state_dict(), path)
    assert_same_outputs(load_clip(path)[0], tiny_reference)


def test_cached_file_with_wrong_hash_is_refused(openai_style_cache, monkeypatch):
    monkeypatch.setenv("DFER_OFFLINE", "1")
    with pytest.raises(ClipWeightsError) as error:
        load_clip("ViT-B/16", cache_dir=openai_style_cache)
    message = str(error.value)
    assert "SHA-256" in message and clip_loader.expected_sha256("ViT-B/16") in message
    assert clip_loader.CLIP_URLS["ViT-B/16"] in message


def test_missing_checkpoint_offline_names_file_url_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(ClipWeightsError) as error:
        load_clip("ViT-L/14", cache_dir=tmp_path)
    message = str(error.value)
    assert clip_loader.CLIP_URLS["ViT-L/14"] in message and str(tmp_path / "ViT-L-14.pt") in message


def test_unreadable_checkpoints_fail_clearly(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(1000))
    with pytest.raises(ClipWeightsError, match="neither a TorchScript archive"):
        load_clip(garbage)
    not_weights = tmp_path / "not_weights.pt"
    torch.save({"epoch": 3}, not_weights)
    with pytest.raises(ClipWeightsError, match="state dict"):
        load_clip(not_weights)
    with pytest.raises(ClipWeightsError, match="ViT-B/16"):
        load_clip("ViT-B/17")


def test_shipped_checkpoint_loads_by_name_through_the_same_path_and_is_hash_checked(tmp_path, monkeypatch,
                                                                                     tiny_reference):
    """A checkpoint shipped in the package (SHIPPED_CLIPS) is found by name and checked by SHA-256 like OpenAI's."""
    shipped = tmp_path / "tiny-shipped.pt"
    torch.save({k: v.half() for k, v in tiny_reference[0].state_dict().items()}, shipped)
    entry = clip_loader.ShippedClip(str(shipped), clip_loader.file_sha256(shipped))
    monkeypatch.setitem(clip_loader.SHIPPED_CLIPS, "tiny-shipped", entry)
    monkeypatch.setenv("DFER_OFFLINE", "1")                   # shipped: no download, ever
    assert "tiny-shipped" in clip_loader.pretrained_names()
    model, resolution = load_clip("tiny-shipped")
    assert resolution == 64 and isinstance(model, clip_model_module().CLIP)
    assert all(torch.equal(model.state_dict()[k], v.half().float()) for k, v in tiny_reference[0].state_dict().items())
    data = bytearray(shipped.read_bytes())
    data[len(data) // 2] ^= 1
    shipped.write_bytes(bytes(data))
    with pytest.raises(ClipWeightsError, match="is not the shipped tiny-shipped") as error:
        load_clip("tiny-shipped")
    assert str(shipped) in str(error.value) and entry.sha256 in str(error.value)
    shipped.unlink()
    with pytest.raises(ClipWeightsError, match="make pretrain-tiny"):
        load_clip("tiny-shipped")


# --- adapters ------------------------------------------------------------------------------


def test_adapter_sets_share_the_tower_and_start_as_identity(tiny_reference):
    clip, images, tokens, image_features, text_features = tiny_reference
    towers = AdaptedCLIP(clip, visual_sets=("video", "parsing"), text_sets=("positive",))
    adapters = sum(p.numel() for n, p in towers.named_parameters() if "adapters" in n)
    assert sum(p.numel() for p in towers.parameters()) == sum(p.numel() for p in clip.parameters()) + adapters

    with torch.no_grad():
        # Zero-initialised up-projections: every set computes what the frozen tower does
        # (the text tower's causal mask included: without it the end token would see padding).
        for name in ("video", "parsing", None):
            assert torch.allclose(towers.encode_image(images, name), image_features, atol=1e-5)
        assert torch.allclose(towers.encode_text(tokens, "positive"), text_features, atol=1e-5)

        for block in towers.visual_adapters["video"]:
            block.mlp.up.weight.normal_()
        assert not torch.allclose(towers.encode_image(images, "video"), image_features, atol=1e-3)
        assert torch.allclose(towers.encode_image(images, "parsing"), image_features, atol=1e-5)


# --- FineCLIPER ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_trained_step():
    model = build_model("tiny-random", CLASSES)
    out = model(make_batch(model))
    out["loss"].backward()
    return model, out


def test_tiny_fineclip_forward_backward(tiny_trained_step):
    model, out = tiny_trained_step
    assert out["logits"].shape == (2, len(CLASSES))
    assert torch.isfinite(out["loss"]) and out["loss"].ndim == 0
    assert set(out["parts"]) == {"classification", "negative", "description"}
    assert model.inputs == {"frames", "masks", "landmarks", "descriptions", "labels"}
    assert all(torch.isfinite(v) and not v.requires_grad for v in out["parts"].values())

    for name, p in model.towers.clip.named_parameters():
        assert not p.requires_grad and p.grad is None, f"frozen CLIP weight {name} got a gradient"
    params = dict(model.named_parameters())
    for tower, sets in (("visual", ("video", "parsing", "landmarks")),
                        ("text", ("positive", "negative", "description"))):
        for s in sets:
            # The up-projection starts at zero, so at step 0 only it (not the down-projection) moves.
            assert has_grad(params[f"towers.{tower}_adapters.{s}.0.mlp.up.weight"]), f"{tower} set {s}"
            assert has_grad(params[f"towers.{tower}_adapters.{s}.1.attn.up.weight"]), f"{tower} set {s}"
    assert has_grad(params["temporal.positional_embedding"])
    assert has_grad(params["temporal.transformer.resblocks.0.mlp.c_fc.weight"])
    assert has_grad(params["gate.2.weight"])


def test_fineclip_without_labels_gives_logits_only():
    model = build_model("tiny-random", CLASSES[:7])
    batch = make_batch(model)
    del batch["labels"]
    with torch.no_grad():
        out = model(batch)
    assert out["logits"].shape == (2, 7) and "loss" not in out and out["parts"] == {}


def test_pairwise_negative_prompt_loss_points_the_right_way():
    model = build_model("tiny-random", CLASSES[:4], use_text_adapters=False, use_visual_adapters=False,
                        negative_loss="pairwise")
    dim, labels = 8, torch.tensor([2])
    positive = torch.nn.functional.normalize(torch.randn(4, dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    clip = positive[2:3]
    near = clip.expand(4, dim)  # the clip itself
    far = -near
    is_own = torch.nn.functional.one_hot(labels, 4).T.bool()
    right = torch.where(is_own, far, near)  # "not own class" far, "not other class" near
    wrong = torch.where(is_own, near, far)
    assert model.negative_prompt_loss(clip, positive, right, labels) < 0.01
    assert model.negative_prompt_loss(clip, positive, wrong, labels) > 10


def test_softmax_negative_prompt_loss_pushes_every_negative_below_the_positives():
    """The reference: one softmax over 2C prompts, the own positive the target (the paper's figure:
    after training, every negative prompt sits below the positives, lowest for the own class)."""
    model = build_model("tiny-random", CLASSES[:4], use_text_adapters=False, use_visual_adapters=False)
    assert model.config.negative_loss == "softmax"
    g = torch.Generator().manual_seed(0)
    positive = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    clip, labels = positive[2:3], torch.tensor([2])
    far_negatives = -positive  # every "no c" opposite its class
    # a negative prompt near the clip is penalised whichever class it negates: the 2C softmax
    # has no "not c is right" answer, unlike the pairwise loss
    for c in range(4):
        near_one = far_negatives.clone()
        near_one[c] = clip[0]
        assert model.negative_prompt_loss(clip, positive, near_one, labels) > 50 * model.negative_prompt_loss(
            clip, positive, far_negatives, labels)
    # and it is the cross-entropy of the positives alone plus nothing when the negatives are far away
    alone = torch.nn.functional.cross_entropy(clip @ positive.T / model.config.temperature, labels)
    assert torch.isclose(model.negative_prompt_loss(clip, positive, far_negatives, labels), alone, rtol=1e-3)


@pytest.fixture(scope="module")
def fineclip_b16():
    return build_model("fineclip-b16", list(DATASETS["dfew"].classes), pretrained=False)


def test_fineclip_b16_trainable_parameters_in_paper_range(fineclip_b16):
    count = fineclip_b16.count_trainable()
    print(f"\nfineclip-b16: {trainable_summary(fineclip_b16)}")
    assert 15e6 <= count <= 30e6
    assert sum(p.numel() for p in fineclip_b16.towers.clip.parameters()) > 140e6
    assert not any(p.requires_grad for p in fineclip_b16.towers.clip.parameters())
    assert fineclip_b16.param_groups(1e-3)[0]["params"] == fineclip_b16.trainable_parameters()


def test_fineclip_b16_forward_at_full_size(fineclip_b16):
    batch = make_batch(fineclip_b16, b=1, t=2)
    with torch.no_grad():
        out = fineclip_b16(batch)
    assert out["logits"].shape == (1, 7) and torch.isfinite(out["loss"])


@pytest.fixture(scope="module")
def full_tiny_count() -> int:
    return build_model("tiny-random", CLASSES).count_trainable()

ABLATIONS = [
    # override, parameter names that must disappear, loss part that must disappear, batch key no longer needed
    (dict(use_parsing=False), "towers.visual_adapters.parsing.", None, "masks"),
    (dict(use_landmarks=False), "towers.visual_adapters.landmarks.", None, "landmarks"),
    (dict(use_negative_prompts=False), "towers.text_adapters.negative.", "negative", None),
    (dict(use_description=False, use_description_branch=False), "towers.text_adapters.description.", "description",
     "descriptions"),
    (dict(use_description=False), None, "description", None),  # the loss only: the branch still reads the text
    (dict(use_description_branch=False), None, None, None),  # the branch only: a smaller gate
    (dict(use_video=False), "towers.visual_adapters.video.", None, "frames"),
    (dict(use_video=False), "temporal.", None, None),
    (dict(temporal_layers=0), "temporal.", None, None),
    (dict(fusion="mean"), "gate.", None, None),
    (dict(use_parsing=False, use_landmarks=False, use_description_branch=False), "gate.", None, "masks"),
    (dict(use_text_adapters=False), "towers.text_adapters.", None, None),
    (dict(use_visual_adapters=False), "towers.visual_adapters.", None, None),
]


@pytest.mark.parametrize("override, gone, part_gone, key_unneeded", ABLATIONS, ids=lambda v: str(v))
def test_fineclip_ablation_switches(override, gone, part_gone, key_unneeded, full_tiny_count):
    model = build_model("tiny-random", CLASSES, **override)
    assert gone is None or not any(name.startswith(gone) for name in trainable_names(model))
    assert model.count_trainable() <= full_tiny_count and (gone is None or model.count_trainable() < full_tiny_count)
    batch = make_batch(model)
    if key_unneeded:
        assert key_unneeded not in model.inputs
        del batch[key_unneeded]
    out = model(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    if part_gone:
        assert part_gone not in out["parts"]
    assert not any(p.grad is not None for p in model.towers.clip.parameters())


def test_fineclip_needs_masks_when_parsing_is_on():
    model = build_model("tiny-random", CLASSES)
    batch = make_batch(model)
    del batch["masks"]
    with pytest.raises(KeyError, match="masks"):
        model(batch)


def test_description_loss_skips_empty_descriptions():
    model = build_model("tiny-random", CLASSES)
    out = model(make_batch(model, descriptions=("", "the mouth opens")))
    assert "description" not in out["parts"] and torch.isfinite(out["loss"])
    out = model(make_batch(model, descriptions=("the mouth opens", "the mouth opens")))
    assert torch.isfinite(out["parts"]["description"])


# --- DFER-CLIP -----------------------------------------------------------------------------


def test_tiny_dferclip_forward_backward():
    model = build_model("tiny-random-dferclip", CLASSES)
    assert model.inputs == {"frames", "labels"}
    batch = make_batch(model)
    del batch["masks"], batch["landmarks"], batch["descriptions"]  # frames only
    out = model(batch)
    out["loss"].backward()
    assert out["logits"].shape == (2, len(CLASSES)) and torch.isfinite(out["loss"])

    clip = model.towers.clip
    visual = list(clip.visual.parameters())
    assert all(p.requires_grad for p in visual) and all(p.grad is not None for p in visual)
    assert has_grad(clip.visual.conv1.weight) and has_grad(clip.visual.proj)
    text_tower = [p for n, p in clip.named_parameters() if not n.startswith("visual.")]
    assert text_tower and all(not p.requires_grad and p.grad is None for p in text_tower)
    assert has_grad(model.context) and has_grad(model.temporal.class_token)

    groups = model.param_groups(1e-3)
    assert [g["name"] for g in groups] == ["temporal", "image_encoder", "context"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-5, 1e-3])
    ids = [{id(p) for p in g["params"]} for g in groups]
    assert sum(map(len, ids)) == len(set().union(*ids)) == len(model.trainable_parameters())
    assert ids[1] == {id(p) for p in visual} and ids[2] == {id(model.context)}
    assert ids[0] == {id(p) for p in model.temporal.parameters()}
    # the reference recipe's rates (DFER-CLIP train_*.sh): temporal 1e-2, image encoder 1e-5, context 1e-3
    reference = build_model("tiny-random-dferclip", CLASSES, image_encoder_lr_scale=1e-3, context_lr_scale=0.1)
    assert [g["lr"] for g in reference.param_groups(1e-2)] == pytest.approx([1e-2, 1e-5, 1e-3])


def test_dferclip_context_sits_after_the_start_token():
    torch.manual_seed(0)   # the context vectors are drawn from the global generator: fix them
    model = build_model("tiny-random-dferclip", CLASSES, context_tokens=5)
    tokens = model.prompt_tokens
    assert (tokens[:, 0] == SOT).all() and (tokens.argmax(dim=1) > 6).all()
    assert (tokens[:, 1:6] == tokens[0, 1]).all() and (tokens[:, 6] != tokens[0, 1]).all()
    with torch.no_grad():
        before = model.encode_classes()
        model.context[3].add_(1.0)
        after = model.encode_classes()
    changed = (before != after).any(dim=1)   # exact: a tiny random CLIP may move a class only slightly
    assert changed.tolist() == [c == 3 for c in range(len(CLASSES))]


def test_dferclip_b32_trainable_parameters():
    model = build_model("dferclip-b32", CLASSES, pretrained=False)
    count = model.count_trainable()
    print(f"\ndferclip-b32: {trainable_summary(model)}")
    visual = sum(p.numel() for p in model.towers.clip.visual.parameters())
    assert count == visual + sum(p.numel() for p in model.temporal.parameters()) + model.context.numel()
    assert 85e6 <= count <= 95e6


# --- registry, config, prompts, imports ------------------------------------------------------


def test_registry_and_config_errors():
    assert set(MODELS) == {"fineclip-b16", "fineclip-b32", "fineclip-l14", "dferclip-b16", "dferclip-b32",
                           "tiny", "tiny-dferclip", "tiny-random", "tiny-random-dferclip"}
    assert model_config("fineclip-l14").clip == "ViT-L/14"
    with pytest.raises(KeyError, match="fineclip-b16"):
        model_config("fineclip-b8")
    with pytest.raises(TypeError, match="use_parsing"):
        model_config("tiny-random", use_parsin=False)
    with pytest.raises(ValueError, match="fusion"):
        ModelConfig(fusion="max")


def lexicon_entries(*files: str) -> list[str]:
    entries = []
    for file in files:
        for line in (PROMPTS_DIR / file).read_text().splitlines():
            entry = re.sub(r"\[adj\]|=", "", line.split("#")[0]).strip().lower()
            if entry:
                entries.append(entry)
    return entries


def test_class_descriptions_cover_every_class_and_never_name_the_emotion():
    config = ModelConfig()
    descriptions = yaml.safe_load(config.prompt_file(config.class_descriptions).read_text())
    every_class = {c for spec in DATASETS.values() for c in spec.classes}
    assert set(descriptions) == every_class
    banned = lexicon_entries("emotion_lexicon.txt", "facial_action_words.txt")
    for cls, text in descriptions.items():
        words = re.findall(r"[a-z]+", text.lower())
        joined = " ".join(words)
        for entry in banned:
            if " " in entry:
                assert f" {entry} " not in f" {joined} ", (cls, entry)
            else:  # the headword and its regular inflections
                assert not {entry, entry + "s", entry + "es", entry + "ed", entry + "d", entry + "ing",
                            entry + "ly"} & set(words), (cls, entry)
        assert len(tokenize(text)[0].nonzero()) + config.context_tokens < 77, f"{cls}: description too long"


def test_descriptions_reach_the_logits_and_a_missing_one_is_masked_out():
    """The description branch (FineCLIPER's high-level cue) is part of the prediction, at test time too."""
    # no temporal model: with zero-initialised adapters and gate, two builds compute the same visual branches
    model = build_model("tiny-random", CLASSES, temporal_layers=0).eval()
    batch = make_batch(model)
    del batch["labels"]
    with torch.no_grad():
        logits = model(batch)["logits"]
        other = model({**batch, "descriptions": ["the mouth opens wide", "the brows go up"]})["logits"]
        missing = model({**batch, "descriptions": ["", "   "]})["logits"]
        visual_only = build_model("tiny-random", CLASSES, temporal_layers=0, use_description_branch=False)(batch)["logits"]
    assert not torch.allclose(logits, other, atol=1e-4)   # the text changes the prediction
    # no description: the branch is left out of the fusion, not fused as the embedding of ""
    # (with the gate at its zero start, the visual branches' equal weights are those of the model without it)
    assert torch.allclose(missing, visual_only, atol=1e-4)
    with pytest.raises(KeyError, match="descriptions"):
        model({k: v for k, v in batch.items() if k != "descriptions"})


def test_text_only_model_predicts_from_the_description_alone():
    model = build_model("tiny-random", CLASSES, use_video=False, use_parsing=False, use_landmarks=False,
                        use_description=False).eval()
    assert model.inputs == {"labels", "descriptions"} and model.branches == ["description"]
    batch = {"descriptions": ["the brows go up", ""]}
    with torch.no_grad():
        logits = model(batch)["logits"]
    assert logits[0].abs().sum() > 0 and torch.count_nonzero(logits[1]) == 0   # no cue at all: uniform
    with pytest.raises(ValueError, match="at least one branch"):
        build_model("tiny-random", CLASSES, use_video=False, use_parsing=False, use_landmarks=False,
                    use_description_branch=False)


def test_one_adapter_per_text_block_is_the_figure_layout():
    two = build_model("tiny-random", CLASSES)
    one = build_model("tiny-random", CLASSES, text_adapters_per_block=1)
    assert all(block.mlp is None for blocks in one.towers.text_adapters.values() for block in blocks)
    assert all(block.mlp is not None for blocks in one.towers.visual_adapters.values() for block in blocks)
    assert one.count_trainable() < two.count_trainable()
    out = one(make_batch(one))
    out["loss"].backward()
    assert torch.isfinite(out["loss"])


def test_parameter_counts_follow_the_papers_table_1_configurations():
    from trainer.param_count import PAPER_TABLE_1, count_table

    table = {r["row"]: r for r in count_table("tiny-random", CLASSES)}
    assert set(table) == set(PAPER_TABLE_1)
    total = {name: r["trainable"] for name, r in table.items()}
    # the paper's order: base < + text < + parsing and landmarks < full
    assert total["low"] < total["low_high"] < total["low_middle"] < total["all"]
    assert all(sum(r["parts"].values()) == r["trainable"] for r in table.values())
    assert "text_adapters.description" in table["low_high"]["parts"]
    assert "visual_adapters.parsing" not in table["low_high"]["parts"]


def test_ablation_rows_resolve_to_the_papers_configurations():
    from trainer.ablation_rows import ROW_NAMES, ROWS, row_config, select_rows

    assert {"all", "text_only", "low", "middle", "dferclip"} <= set(ROW_NAMES) and len(set(ROW_NAMES)) == len(ROWS)
    rows = {row.name: row for row in ROWS}
    text_only = row_config(rows["text_only"], "tiny", "sample", 1, {"epochs": 3, "model_options": {"adapter_ratio": 0.25}})
    assert text_only.epochs == 3 and text_only.model == "tiny"
    options = text_only.model_options
    assert options["adapter_ratio"] == 0.25 and not (options["use_video"] or options["use_parsing"] or options["use_landmarks"])
    assert row_config(rows["dferclip"], "tiny", "sample", 1, {}).model == "tiny-dferclip"
    assert row_config(rows["landmarks_on_face"], "tiny", "sample", 2, {}).landmark_style == "points_on_face"
    for row in ROWS:   # every row builds
        if row.family == "fineclip":
            build_model("tiny-random", CLASSES, **row.options)
    assert [r.name for r in select_rows("text_only,all")] == ["all", "text_only"]
    # the published numbers, per configuration (project page: Table 1 *, † and *†; Tables 4-9), per backbone
    from trainer.ablation_rows import published

    def number(name, model="fineclip-b16", dataset="dfew", **overrides):
        row = rows[name]
        found = published(row, row_config(row, model, dataset, 1, overrides))
        return (found["uar"], found["war"]) if found["uar"] is not None else found["note"]

    assert number("all") == (65.98, 76.21) and number("all", dataset="mafw") == (45.01, 56.91)
    assert number("low_high") == (65.72, 75.01) and number("low_middle", dataset="ferv39k") == (44.15, 52.12)
    assert number("middle_high") == "not in the paper" and number("all", model="tiny", dataset="sample") == (65.98, 76.21)
    assert number("all", model="fineclip-l14", recipe="paper") == (68.01, 78.93)          # Table 8
    assert "ViT-B/16 only" in number("low", model="fineclip-b32")
    # Table 6 row 1 repeats DFER-CLIP's own number: ViT-B/32 under its reference code, nothing else
    assert "no published DFER-CLIP number for dferclip-b16" in number("dferclip")
    reference = row_config(rows["dferclip"], "fineclip-b32", "dfew", 1, {"recipe": "paper"})
    assert (reference.model, reference.recipe) == ("dferclip-b32", "reference")
    assert number("dferclip", model="fineclip-b32", recipe="paper") == (59.61, 71.25)
    with pytest.raises(ValueError, match="unknown ablation row"):
        select_rows("all,everything_else")
