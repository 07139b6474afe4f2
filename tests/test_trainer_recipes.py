"""Recipes (ours / reference / paper), both selection protocols, DFER-CLIP's reference temporal block and
class-description files (the reference Text.py fetched over HTTP and checked): each checked against the
reference code's or the paper's values or by training for real."""

import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.config import resolve
from trainer.train import multistep_factor, train

CLASSES = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]


def test_dferclip_reference_recipe_has_the_reference_values():
    """zengqunzhao/DFER-CLIP train_DFEW.sh / main.py / dataloader/video_dataloader.py."""
    config = resolve("dferclip-b32", "dfew", {"recipe": "reference"})
    assert (config.optimizer, config.momentum, config.weight_decay, config.lr) == ("sgd", 0.9, 1e-4, 1e-2)
    assert (config.schedule, config.lr_milestones, config.lr_gamma, config.epochs) == ("multistep", (30, 40), 0.1, 50)
    assert (config.batch_size, config.precision, config.grad_clip, config.num_frames) == (48, "fp32", 0, 16)
    assert config.drop_last and not resolve("dferclip-b32", "dfew").drop_last
    assert (config.crop_scale, config.flip, config.normalise, config.val_fraction) == ((0.08, 1.0), True, "unit", 0)
    assert (config.brightness, config.rotation) == (0.5, 0)                      # DFEW: ColorJitter(0.5)
    assert resolve("dferclip-b32", "ferv39k", {"recipe": "reference"}).rotation == 4   # FERV39k: RandomRotation(4)
    assert resolve("dferclip-b32", "mafw", {"recipe": "reference"}).brightness == 0    # MAFW: neither
    assert config.model_options["temporal_block"] == "dferclip" and config.run_name() == "dfew-dferclip-b32-reference-fold1"
    # video_dataloader.py's frame rule, a global batch of 48 under torchrun, the reference's descriptions
    assert (config.train_sampling, config.global_batch, config.class_descriptions) == ("dferclip", True, "reference")
    assert config.rank_batch(1) == 48 and config.rank_batch(8) == 6 and config.batch_record(2)["global"] == 48
    with pytest.raises(ValueError, match="global batch of 48.*5 processes"):
        config.rank_batch(5)
    assert resolve("dferclip-b32", "dfew").rank_batch(8) == 48          # ours: per process
    model = resolve("dferclip-b32", "dfew", {"recipe": "reference", "class_descriptions": "ours"}).build_model(
        CLASSES, pretrained=False)
    rates = {g["name"]: g["lr"] for g in model.param_groups(config.lr)}
    assert rates == pytest.approx({"temporal": 1e-2, "image_encoder": 1e-5, "context": 1e-3})
    # the default stays ours; an override of one model option keeps the recipe's others
    assert resolve("dferclip-b32", "dfew").optimizer == "adamw"
    merged = resolve("dferclip-b32", "dfew", {"recipe": "reference", "model_options": {"context_tokens": 4}})
    assert merged.model_options["context_tokens"] == 4 and merged.model_options["temporal_block"] == "dferclip"
    with pytest.raises(ValueError, match="no 'reference' recipe.*RECIPE=paper"):
        resolve("fineclip-b16", "dfew", {"recipe": "reference"})
    with pytest.raises(ValueError, match="no 'paper' recipe.*RECIPE=reference"):
        resolve("dferclip-b32", "dfew", {"recipe": "paper"})
    with pytest.raises(ValueError, match="recipe must be one of|unknown recipe"):
        resolve("tiny-random", "sample", {"recipe": "mine"})


def test_multistep_schedule_is_torch_multisteplr_stepped_per_epoch():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[30, 40], gamma=0.1)
    for epoch in range(50):
        assert multistep_factor(epoch, (30, 40), 0.1) == pytest.approx(optimizer.param_groups[0]["lr"]), epoch
        optimizer.step()
        scheduler.step()


def reference_parameter_count(width: int, layers: int, frames: int) -> int:
    """DFER-CLIP's Temporal_Transformer_Cls(num_patches=frames, input_dim=width, depth=layers, heads=8,
    mlp_dim=1024, dim_head=64), counted from models/Temporal_Model.py."""
    inner = 8 * 64
    per_layer = (2 * width              # PreNorm LayerNorm (attention)
                 + width * 3 * inner    # to_qkv, no bias
                 + inner * width + width   # to_out
                 + 2 * width              # PreNorm LayerNorm (feed-forward)
                 + width * 1024 + 1024 + 1024 * width + width)
    return width + (frames + 1) * width + layers * per_layer   # class token, positions, blocks


def test_reference_temporal_block_matches_dferclip_architecture():
    from trainer.temporal import TemporalTransformer

    block = TemporalTransformer(512, 1, 16, class_token=True, block="dferclip")
    assert sum(p.numel() for p in block.parameters()) == reference_parameter_count(512, 1, 16)
    assert float(block.positional_embedding.detach().std()) == pytest.approx(1.0, abs=0.05)   # N(0, 1), not 0.01·N
    x = torch.randn(3, 16, 512)
    out = block(x)
    assert out.shape == (3, 512)
    # pre-norm residual: with the attention and MLP outputs zeroed, the class token passes through
    with torch.no_grad():
        for layer in block.transformer:
            layer.attention.out.weight.zero_(), layer.attention.out.bias.zero_()
            layer.mlp[-1].weight.zero_(), layer.mlp[-1].bias.zero_()
    assert torch.allclose(block(x), (block.class_token + block.positional_embedding[0]).expand(3, -1))
    # the attention is softmax(q kᵀ / 8) v per head of 64
    attention = block.transformer[0].attention
    y = torch.randn(2, 5, 512)
    q, k, v = attention.qkv(y).view(2, 5, 3, 8, 64).permute(2, 0, 3, 1, 4)
    manual = torch.softmax(q @ k.transpose(-1, -2) / 8, dim=-1) @ v
    assert torch.allclose(attention(y), attention.out(manual.transpose(1, 2).reshape(2, 5, 512)), atol=1e-5)
    assert resolve("tiny-random-dferclip", "sample", {"recipe": "reference", "class_descriptions": "ours"}).build_model(
        CLASSES).temporal.block == "dferclip"


def test_class_descriptions_from_the_reference_text_file_or_one_per_line(tmp_path):
    from trainer.dferclip import read_class_descriptions
    from trainer.models import build_model

    text_py = tmp_path / "Text.py"   # the layout of DFER-CLIP's models/Text.py (our own sentences here)
    text_py.write_text("class_names_7 = ['a.', 'b.']\nclass_descriptor_7 = [\n"
                       + "".join(f"'cue number {i} of the face.',\n" for i in range(7))
                       + "]\nclass_descriptor_11 = ['x']\nraise SystemExit('never executed')\n")
    assert read_class_descriptions(text_py, CLASSES) == [f"cue number {i} of the face." for i in range(7)]
    lines = tmp_path / "mine.txt"
    lines.write_text("\n".join(f"line {i}" for i in range(7)) + "\n\n")
    assert read_class_descriptions(lines, CLASSES)[6] == "line 6"
    with pytest.raises(ValueError, match="6 descriptions for 7 classes"):
        lines.write_text("\n".join(f"line {i}" for i in range(6)))
        read_class_descriptions(lines, CLASSES)
    with pytest.raises(ValueError, match="1 descriptions for 11 classes"):
        read_class_descriptions(text_py, CLASSES + ["contempt", "anxiety", "helplessness", "disappointment"])
    model = build_model("tiny-random-dferclip", CLASSES, class_descriptions=str(text_py))
    assert model.prompt_tokens.shape[0] == 7


def write_reference_form(path: Path) -> list[str]:
    """A Text.py laid out as DFER-CLIP's models/Text.py (its six lists), with made-up descriptions, and a
    last line that would stop a reader that ran it; returns the 7-class descriptions."""
    seven = [f"made-up cue {i}: the mouth and the brows of face {i}." for i in range(7)]
    eleven = [f"made-up cue {i} of eleven." for i in range(11)]
    text = "#" * 20 + " 7 Classes " + "#" * 20 + "\n"
    for name, values in (("class_names_7", [f"class {i}." for i in range(7)]),
                         ("class_names_with_context_7", [f"an expression of class {i}." for i in range(7)]),
                         ("class_descriptor_7", seven), ("class_names_11", [f"c{i}." for i in range(11)]),
                         ("class_names_with_context_11", [f"an expression of c{i}." for i in range(11)]),
                         ("class_descriptor_11", eleven)):
        text += f"{name} = [\n" + ",\n".join(repr(v) for v in values) + "\n]\n"
    path.write_text(text + "raise SystemExit('a description file is read, never run')\n")
    return seven


def test_the_reference_text_file_is_fetched_over_http_and_checked(tmp_path, monkeypatch):
    """`make fetch-reference` from a local server: the recorded hash decides, the file lands in the cache."""
    from trainer import reference_descriptions as ref
    from trainer.fetch_reference import main

    served = tmp_path / "served"
    served.mkdir()
    write_reference_form(served / "Text.py")
    digest = hashlib.sha256((served / "Text.py").read_bytes()).hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/Text.py"
    monkeypatch.setenv("DFER_TOOLKIT_CACHE", str(tmp_path / "cache"))
    try:
        assert main(["--url", url, "--sha256", "0" * 64]) == 1       # not the recorded bytes
        assert not ref.cached_file().exists()
        assert main(["--check"]) == 1 and main(["--url", url, "--sha256", digest]) == 0
        assert ref.cached_file().read_bytes() == (served / "Text.py").read_bytes()
        assert str(ref.cached_file()).startswith(str(tmp_path / "cache" / "reference"))
    finally:
        server.shutdown()
    # RECIPE=reference reads only the file with the reference's own hash, recorded in the repository
    with pytest.raises(ValueError, match="not the reference's"):
        ref.describe_source("reference")
    assert ref.URL.endswith(f"/{ref.COMMIT}/models/Text.py") and len(ref.SHA256) == 64


def test_reference_recipe_stops_without_the_descriptions_and_trains_with_a_text_file(sample_shards, tmp_path,
                                                                                    monkeypatch, capsys):
    """`make train DATASET=sample MODEL=tiny-dferclip RECIPE=reference`: the message without Text.py; a run with
    a file in the reference's form, its descriptions in the model's prompts and its hash in metrics.json;
    ours only when asked for."""
    from trainer.clip_loader import tokenize
    from trainer.dferclip import PLACEHOLDER
    from trainer.train import main

    out, _ = sample_shards
    monkeypatch.setenv("DFER_TOOLKIT_CACHE", str(tmp_path / "empty-cache"))
    command = ["--dataset", "sample", "--model", "tiny-dferclip", "--fold", "1", "--shards", str(out),
               "--set", "recipe=reference", "--set", f"runs_dir={tmp_path}", "--set", "epochs=1",
               "--set", "workers=0", "--set", "batch_size=4", "--set", "num_frames=8"]
    assert main(command) == 1
    error = capsys.readouterr().err
    assert "make fetch-reference" in error and "class_descriptions=ours" in error and "models/Text.py" in error
    text_py = tmp_path / "Text.py"
    seven = write_reference_form(text_py)
    assert main(command + ["--set", f"class_descriptions={text_py}"]) == 0
    runs = sorted(tmp_path.glob("sample-tiny-dferclip-reference-*-fold1"))   # the name carries a hash of the --set values
    assert len(runs) == 1, runs
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["recipe"] == "reference" and metrics["class_descriptions"] == {
        "source": "file", "file": str(text_py), "sha256": hashlib.sha256(text_py.read_bytes()).hexdigest()}
    assert metrics["recipe_settings"]["train_sampling"] == "dferclip" and metrics["batch"]["global"] == 4
    config = resolve("tiny-dferclip", "sample", {"recipe": "reference", "class_descriptions": str(text_py)})
    model = config.build_model(CLASSES)
    prompts = [f"{' '.join([PLACEHOLDER] * 8)} {d}" for d in seven]
    assert torch.equal(model.prompt_tokens, tokenize(prompts))
    ours = resolve("tiny-dferclip", "sample", {"recipe": "reference", "class_descriptions": "ours"})
    assert ours.descriptions_source() == {"source": "ours", "file": "", "sha256": None}
    assert resolve("tiny", "sample").descriptions_source() is None          # FineCLIPER reads none


def test_paper_recipe_turns_on_every_paper_switch_and_records_them(sample_shards, tmp_path):
    """RECIPE=paper for FineCLIPER: the figure's layout, the 2C-softmax negatives, the description branch,
    landmarks over the face, all training folds, test selection; metrics.json lists every switch."""
    config = resolve("fineclip-b16", "dfew", {"recipe": "paper"})
    options = config.model_options
    assert (options["use_description_branch"], options["use_description"], options["negative_loss"]) == \
        (True, True, "softmax")
    assert (options["temporal_layers"], options["text_adapters_per_block"], options["adapter_scale"]) == (0, 1, 0.5)
    assert options["train_clip"] == "none" and options["use_parsing"] and options["use_landmarks"]
    assert (config.landmark_style, config.val_fraction, config.paper_protocol) == ("points_on_face", 0, True)
    assert config.run_name() == "dfew-fineclip-b16-paper-fold1"
    tiny = resolve("tiny", "sample", {"recipe": "paper"})
    assert tiny.model_options == options and tiny.num_frames == 8          # the same switches on the CPU stand-in
    out, _ = sample_shards
    run = resolve("tiny-random", "sample", {"recipe": "paper", "shards": str(out), "runs_dir": str(tmp_path),
                                            "epochs": 1, "workers": 0, "num_frames": 4})
    result = train(run)
    assert result["recipe"] == "paper" and "val" in result["protocols"] and "paper" in result["protocols"]
    settings = result["recipe_settings"]
    for key in ("landmark_style", "val_fraction", "paper_protocol", "train_sampling", "optimizer", "lr", "epochs"):
        assert key in settings, key
    assert settings["model_options"]["negative_loss"] == "softmax" and settings["model_options"]["temporal_layers"] == 0
    assert result["shards"]["describer"] == "geometric" and result["shards"]["describer_is_the_papers"] is False


def test_both_protocols_in_metrics_with_all_training_folds(sample_shards, tmp_path):
    """val_fraction=0: `val` keeps the last epoch, `paper` the best test WAR; both name how they chose."""
    out, _ = sample_shards
    config = resolve("tiny-random", "sample", {"shards": str(out), "runs_dir": str(tmp_path), "epochs": 3, "workers": 0,
                                        "val_fraction": 0, "lr": 0.01})
    result = train(config)
    metrics = json.loads((tmp_path / "sample-tiny-random-fold1" / "metrics.json").read_text())
    history = [json.loads(line) for line in (tmp_path / "sample-tiny-random-fold1" / "log.jsonl").read_text().splitlines()]
    val, paper = metrics["protocols"]["val"], metrics["protocols"]["paper"]
    assert val["epoch"] == 3 and val["selection"].startswith("last epoch") and val["trained_on"] == "all training folds"
    best = max(range(3), key=lambda i: (history[i]["test_war"], -i))     # the first epoch of the best WAR
    assert paper["epoch"] == best + 1 and paper["test"]["war"] == history[best]["test_war"]
    assert "test-set selection" in paper["selection"]
    assert metrics["test"] == val["test"] and val["test"]["war"] == pytest.approx(history[-1]["test_war"])
    assert all(h["val_uar"] is None for h in history) and result["best_val_uar"] is None


def test_reference_recipe_trains_with_sgd_and_fp32(sample_shards, tmp_path):
    from trainer.train import prepare_run

    out, _ = sample_shards
    text_py = tmp_path / "Text.py"
    write_reference_form(text_py)
    config = resolve("tiny-random-dferclip", "sample", {"recipe": "reference", "shards": str(out), "runs_dir": str(tmp_path),
                                                 "epochs": 2, "workers": 0, "batch_size": 2, "num_frames": 8,
                                                 "lr_milestones": [1], "class_descriptions": str(text_py)})
    run = prepare_run(config, tmp_path / "probe")
    assert isinstance(run.optimizer, torch.optim.SGD) and run.optimizer.defaults["momentum"] == 0.9
    assert "val" not in run.loaders and run.loaders["train"].dataset.config.drop_last
    result = train(config)
    log = tmp_path / "sample-tiny-random-dferclip-reference-fold1" / "log.jsonl"
    history = [json.loads(line) for line in log.read_text().splitlines()]
    assert [h["step"] for h in history] == [3, 6] and result["recipe"] == "reference"   # 7 clips: 3 full batches of 2
    assert set(result["protocols"]) == {"val", "paper"} and np.isfinite(result["test"]["uar"])
    from trainer.checkpoint import load_checkpoint

    groups = load_checkpoint(log.parent / "last.pt")["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-6, 1e-4])   # epoch 2 is past the milestone: × 0.1


def test_zero_shot_run_selects_its_epoch_without_labels(sample_shards, tmp_path):
    out, _ = sample_shards
    config = resolve("tiny-random", "sample", {"shards": str(out), "runs_dir": str(tmp_path), "epochs": 3, "workers": 0,
                                        "lr": 0.01, "paper_protocol": False,
                                        "model_options": {"supervision": "descriptions"}})
    result = train(config)
    history = [json.loads(line) for line in (tmp_path / "sample-tiny-random-fold1" / "log.jsonl").read_text().splitlines()]
    losses = [h["val_description_loss"] for h in history]
    assert all(np.isfinite(losses)) and len(set(losses)) == 3
    val = result["protocols"]["val"]
    assert val["selection"].startswith("lowest validation description loss") and "paper" not in result["protocols"]
    assert val["epoch"] == 1 + int(np.argmin(losses))
    assert all("test_war" not in h for h in history)      # no test pass per epoch without the paper protocol


def test_fold_summary_per_protocol():
    from trainer.train import fold_summary

    def run(val_uar, paper_uar):
        return {"protocols": {"val": {"selection": "best validation UAR", "test": {"uar": val_uar, "war": 50.0}},
                              "paper": {"selection": "best test WAR", "test": {"uar": paper_uar, "war": 60.0}}}}

    summary = fold_summary([run(40.0, 45.0), run(50.0, 55.0)])
    assert summary["val"]["uar"] == {"mean": 45.0, "std": 5.0, "per_fold": [40.0, 50.0]}
    assert summary["paper"]["uar"]["mean"] == 50.0 and summary["paper"]["war"]["std"] == 0.0
