"""The trainer on real shards of the sample dataset: loader, training, resume, DDP, metrics."""

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.config import resolve
from trainer.data import (DataConfig, ShardClips, collate, full_batches, is_validation, shuffled, to_model_inputs,
                          tsn_indices)
from trainer.metrics import recognition_metrics
from trainer.checkpoint import load_checkpoint
from trainer.train import train

ROOT = Path(__file__).resolve().parent.parent


def ok_keys_by_partition(out: Path) -> dict[str, set]:
    keys: dict[str, set] = {}
    for path in out.glob("*.status.jsonl"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["status"] == "ok":
                keys.setdefault(row["partition"], set()).add(row["clip_id"])
    return keys


def rows_by_partition(out: Path) -> dict[str, list[dict]]:
    """Every manifest row of the status tables (ok or failed), per partition."""
    rows: dict[str, list[dict]] = {}
    for path in out.glob("*.status.jsonl"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            rows.setdefault(row["partition"], []).append(row)
    return rows


def test_loader_shapes_and_fold_membership(sample_shards):
    out, _ = sample_shards
    config = DataConfig(shards=str(out), fold=2, num_frames=8, image_size=64, workers=0)
    split = {name: list(ShardClips(config, name)) for name in ("train", "val", "test")}
    keys = {name: {e["key"] for e in examples} for name, examples in split.items()}
    by_partition = ok_keys_by_partition(out)
    assert keys["test"] == by_partition["fold2"]
    assert keys["train"] | keys["val"] == set().union(*(v for p, v in by_partition.items() if p != "fold2"))
    assert not keys["train"] & keys["val"] and not keys["test"] & (keys["train"] | keys["val"])
    example = split["train"][0]
    assert example["frames"].shape == example["masks"].shape == example["landmarks"].shape == (8, 3, 64, 64)
    assert all(example[k].dtype == torch.uint8 for k in ("frames", "masks", "landmarks"))   # normalised later
    assert isinstance(example["description"], str) and example["description"]
    batch = collate(split["test"][:2])
    assert batch["frames"].shape == (2, 8, 3, 64, 64) and batch["labels"].dtype == torch.long
    assert batch["frames"].dtype == torch.uint8
    inputs = to_model_inputs(batch, "cpu")
    assert inputs["frames"].dtype == torch.float32 and inputs["frames"].shape == (2, 8, 3, 64, 64)
    assert abs(float(inputs["frames"].mean())) < 3 and inputs["keys"] == batch["keys"]


def test_training_clips_are_mixed_across_shards(sample_shards):
    """Shards keep manifest order (the sample's is sorted by class); the training stream must not."""
    out, _ = sample_shards
    config = DataConfig(shards=str(out), fold=1, num_frames=2, image_size=32, workers=0,
                        use_masks=False, use_landmarks=False)
    in_shard_order = [e["key"] for e in ShardClips(dataclasses.replace(config, shuffle_buffer=0), "train")]
    dataset = ShardClips(config, "train")
    first, again = [e["key"] for e in dataset], [e["key"] for e in dataset]
    dataset.set_epoch(1)
    next_epoch = [e["key"] for e in dataset]
    assert sorted(first) == sorted(in_shard_order) == sorted(next_epoch)   # every clip once
    assert first == again and first != in_shard_order and next_epoch != first   # seeded by epoch
    assert [e["key"] for e in ShardClips(config, "test")] == [e["key"] for e in ShardClips(
        dataclasses.replace(config, shuffle_buffer=0), "test")]   # evaluation streams keep shard order


def test_shuffle_buffer_is_a_seeded_permutation():
    import random

    items = list(range(100))
    out = list(shuffled(iter(items), 16, random.Random(3)))
    assert sorted(out) == items and out != items
    assert out == list(shuffled(iter(items), 16, random.Random(3)))
    assert list(shuffled(iter(range(5)), 16, random.Random(0))) != [] and sorted(shuffled(range(5), 16, random.Random(0))) == list(range(5))


def test_tsn_sampling():
    import random

    rng = random.Random(0)
    train = tsn_indices(160, 16, True, rng)
    assert len(train) == 16 and all(10 * k <= i < 10 * (k + 1) for k, i in enumerate(train))
    assert list(tsn_indices(160, 16, False, rng)) == [10 * k + 5 for k in range(16)]
    assert list(tsn_indices(5, 8, False, rng)) == [0, 1, 2, 3, 4, 4, 4, 4]


def test_loader_skips_a_corrupt_sample_and_a_truncated_shard(sample_shards, tmp_path):
    out = tmp_path / "damaged"
    shutil.copytree(sample_shards[0], out)
    shard, other = sorted(out.glob("fold2-*.tar"))[:2]      # fold 1 trains on fold2 (and fold3)
    config = DataConfig(shards=str(out), fold=1, num_frames=8, image_size=64, workers=0)
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    # break the landmarks of the shard's first sample in the training split (not the validation share)
    broken = next(key for key in (m.name.split(".")[0] for m, _ in members)
                  if not is_validation(key, config.val_fraction, config.seed))
    with tarfile.open(shard, "w") as tar:
        for member, data in members:
            if member.name == f"{broken}.landmarks.npy":
                data = b"not an array"
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    other.write_bytes(other.read_bytes()[: other.stat().st_size // 2])   # truncated tar
    dataset = ShardClips(config, "train")
    examples = list(dataset)
    intact = list(ShardClips(DataConfig(shards=str(sample_shards[0]), fold=1, num_frames=8, image_size=64,
                                        workers=0), "train"))
    assert dataset.skips.skipped == 2                         # the bad sample and the broken tar, counted
    assert 0 < len(examples) < len(intact)                    # and the rest still streams


def test_drop_last_pools_the_workers_short_batches():
    """DFER-CLIP's drop_last=True drops one incomplete batch an epoch; with 2 loader workers each ending on a
    short batch, those are pooled into full batches first and only the remainder is dropped."""
    def batch(first: int, n: int) -> dict:
        return {"keys": [f"c{i}" for i in range(first, first + n)], "labels": torch.arange(first, first + n),
                "frames": torch.arange(first, first + n).view(n, 1).to(torch.uint8), "worker": first % 2}

    sizes = [(0, 4), (4, 4), (8, 3), (11, 4), (15, 2), (17, 3), (20, 2)]   # 22 clips, 4 short batches
    out = list(full_batches((batch(a, n) for a, n in sizes), 4))
    assert [len(b["keys"]) for b in out] == [4, 4, 4, 4, 4] and all(len(b["frames"]) == 4 for b in out)
    kept = [k for b in out for k in b["keys"]]
    assert len(set(kept)) == 20 and set(kept) < {f"c{i}" for i in range(22)}   # 2 dropped, no clip twice
    for b in out:   # every clip's tensors travel with its key
        assert [f"c{int(i)}" for i in b["labels"]] == b["keys"] == [f"c{int(i)}" for i in b["frames"][:, 0]]


def test_metrics():
    m = recognition_metrics(np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 1, 1, 0, 0]), ["a", "b", "c"])
    assert m["war"] == pytest.approx(100 * 3 / 6)
    assert m["uar"] == pytest.approx(100 * (1 / 2 + 2 / 3 + 0) / 3)
    assert m["per_class_recall"]["c"] == 0.0 and m["confusion_matrix"][1] == [1, 2, 0]
    assert m["unscored"] == 0 and m["scored_only"]["uar"] == m["uar"]


def test_clips_that_failed_preprocessing_count_as_wrong():
    # two more "a" clips and one "c" clip without a prediction
    m = recognition_metrics(np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 1, 1, 0, 2]), ["a", "b", "c"],
                            unscored=[0, 0, 2])
    assert m["samples"] == 9 and m["unscored"] == 3 and m["unscored_per_class"] == {"a": 2, "c": 1}
    assert m["war"] == pytest.approx(100 * 4 / 9)
    assert m["uar"] == pytest.approx(100 * (1 / 4 + 2 / 3 + 1 / 2) / 3)
    assert m["scored_only"] == {"uar": pytest.approx(100 * (1 / 2 + 2 / 3 + 1) / 3),
                                "war": pytest.approx(100 * 4 / 6), "samples": 6}
    assert m["per_class_recall"]["a"] == 25.0 and m["confusion_matrix"][0] == [1, 1, 0]
    # a class present only among the failed clips still counts in UAR (recall 0)
    only_failed = recognition_metrics(np.array([0]), np.array([0]), ["a", "b"], unscored=[1])
    assert only_failed["uar"] == pytest.approx(50.0) and only_failed["war"] == pytest.approx(50.0)


def _sample_root(out: Path) -> Path:
    """The sample dataset folder the shards in `out` were made from."""
    return Path(json.loads((out / "index.json").read_text())["manifest"]["path"]).parent


def tiny_config(out: Path, runs: Path, **extra):
    return resolve("tiny-random", "sample", {"shards": str(out), "runs_dir": str(runs), "epochs": 2, "workers": 0,
                                      "batch_size": 8, **extra})


def test_train_writes_a_run_and_resume_reproduces_it(sample_shards, tmp_path):
    out, _ = sample_shards
    result = train(tiny_config(out, tmp_path / "a"))
    run = tmp_path / "a" / "sample-tiny-random-fold1"
    for name in ("config.json", "log.jsonl", "metrics.json", "confusion.png", "curves.png", "best.pt", "last.pt"):
        assert (run / name).is_file(), name
    # every test clip is in the denominators, those that failed preprocessing as wrong answers
    fold1 = rows_by_partition(out)["fold1"]
    failed = [r for r in fold1 if r["status"] != "ok"]
    assert failed and result["test"]["samples"] == len(fold1) and result["test"]["unscored"] == len(failed)
    assert result["test"]["scored_only"]["samples"] == len(ok_keys_by_partition(out)["fold1"])
    assert len((run / "log.jsonl").read_text().splitlines()) == 2
    # make demo's second run reuses this one (another configuration is refused the folder); its closing
    # summary reads the index and the metrics
    from trainer.run_dir import RunConflict, plan
    from trainer.run_summary import summary_lines

    assert plan(tiny_config(out, tmp_path / "a"), run).action == "finished"
    with pytest.raises(RunConflict, match="another configuration \\(lr [0-9.e-]+ -> 0.1\\)"):
        plan(tiny_config(out, tmp_path / "a", lr=0.1), run)
    lines = "\n".join(summary_lines(out, run, []))
    assert f"({result['test']['samples']} clips, {len(failed)} failed preprocessing, counted as wrong): " \
           f"UAR {result['test']['uar']:.1f} %" in lines and "no_face 1" in lines
    assert "protocol val: epoch" in lines and "paper      UAR" in lines
    # interrupted after one epoch, then resumed: the same final state as the uninterrupted run
    assert train(tiny_config(out, tmp_path / "b"), stop_after=1) is None
    resumed = train(tiny_config(out, tmp_path / "b"), resume=tmp_path / "b" / "sample-tiny-random-fold1")
    a, b = load_checkpoint(run / "last.pt"), load_checkpoint(tmp_path / "b" / "sample-tiny-random-fold1" / "last.pt")
    assert a["step"] == b["step"] and a["history"][-1]["train_loss"] == pytest.approx(b["history"][-1]["train_loss"])
    for name, tensor in a["model"].items():
        assert torch.allclose(tensor, b["model"][name], atol=1e-6), name
    assert resumed["test"] == result["test"]


def test_ddp_two_processes_on_cpu(sample_shards, tmp_path):
    """Two torchrun ranks read disjoint shares and gather their predictions: with lr=0 (the same
    weights in both runs) the metrics equal a one-process run's, every test clip counted once."""
    out, _ = sample_shards
    settings = {"epochs": 1, "workers": 0, "lr": 0, "runs_dir": str(tmp_path / "ddp")}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
               "-m", "trainer.train", "--dataset", "sample", "--model", "tiny-random", "--shards", str(out),
               "--name", "sample-tiny-random"]
    command += [f"--set={key}={value}" for key, value in settings.items()]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "\r" not in done.stdout + done.stderr   # output to a pipe: whole lines, no redrawn progress bar
    metrics = json.loads((tmp_path / "ddp" / "sample-tiny-random-fold1" / "metrics.json").read_text())
    assert metrics["test"]["scored_only"]["samples"] == len(ok_keys_by_partition(out)["fold1"])
    single = train(tiny_config(out, tmp_path / "one", **{**settings, "runs_dir": str(tmp_path / "one")}))
    for protocol in ("val", "paper"):
        assert metrics["protocols"][protocol]["test"] == json.loads(json.dumps(single["protocols"][protocol]["test"]))


def test_ddp_finishes_when_the_ranks_get_unequal_shares(sample_shards, tmp_path):
    """Three training shards over two ranks, one clip per batch: the ranks' batch counts differ.
    Each must stop at the shortest rank's end, and read best.pt only once rank 0 has written it."""
    out, _ = sample_shards
    uneven = tmp_path / "uneven"
    shutil.copytree(out, uneven)
    training = sorted(p for p in uneven.glob("*.tar") if not p.name.startswith("fold1-"))
    for extra in training[3:]:
        extra.unlink()
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29534",
               "-m", "trainer.train", "--dataset", "sample", "--model", "tiny-random", "--shards", str(uneven),
               "--name", "sample-tiny-random",
               "--set", "epochs=2", "--set", "workers=0", "--set", "batch_size=1", "--set", f"runs_dir={tmp_path}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "sample-tiny-random-fold1" / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["test"]["scored_only"]["samples"] == len(ok_keys_by_partition(out)["fold1"])


def one_clip_shards(out: Path, folder: Path, copies: int, tars: int) -> Path:
    """The shards of `out` with the training partitions replaced by `tars` tars of `copies` copies of one
    training clip each (keys made distinct): every process then reads the same clip lengths, so only
    its seeds can make its draws differ."""
    from pipeline.shards.tar import iter_tar_members

    shutil.copytree(out, folder)
    index = json.loads((folder / "index.json").read_text())
    training = [p for p in sorted(folder.glob("*.tar")) if not p.name.startswith("fold1-")]
    members = next(iter_tar_members(str(training[0])))
    for path in training:
        path.unlink()
    for t in range(tars):
        with tarfile.open(folder / f"fold2-{t:06d}.tar", "w") as tar:
            for c in range(copies):
                for field, data in members.items():
                    if not field.startswith("__"):
                        info = tarfile.TarInfo(f"{members['__key__']}-copy{t}{c:02d}.{field}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(bytes(data)))
    index["samples"] = {p: (copies * tars if p == "fold2" else 0 if p != "fold1" else n)
                        for p, n in index["samples"].items()}
    (folder / "index.json").write_text(json.dumps(index))
    return folder


def test_reference_recipe_under_torchrun_keeps_the_global_batch_and_each_rank_draws_its_own(sample_shards, tmp_path):
    """Two gloo ranks on the CPU, RECIPE=reference: a global batch of 48 is 24 per rank, a step trains 48
    clips, metrics.json and the log say so; the ranks read the same clip but draw different frames and
    augmentations, and an epoch read again draws the same."""
    out, _ = sample_shards
    shards = one_clip_shards(out, tmp_path / "one-clip", copies=26, tars=2)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29535",
               str(ROOT / "tests" / "ddp_rank_draws.py"), str(shards), str(tmp_path / "runs"), str(tmp_path / "draws.json")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "batch 48 = 24 per process x 2" in done.stdout
    run = tmp_path / "runs" / "sample-tiny-random-dferclip-reference-fold1"
    metrics = json.loads((run / "metrics.json").read_text())
    assert {k: metrics["batch"][k] for k in ("per_rank", "world_size", "global")} == {"per_rank": 24, "world_size": 2,
                                                                                       "global": 48}
    epoch = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    assert epoch["step"] == 1 and epoch["clips"] == 48 and epoch["global_batch"] == 48   # 26 a rank: one step of 24
    ranks = json.loads((tmp_path / "draws.json").read_text())
    assert [r["per_rank_batch"] for r in ranks] == [24, 24] and [r["world"] for r in ranks] == [2, 2]
    assert all(r["first"] == r["again"] for r in ranks)                          # reproducible
    first, second = ([d["augmentation"] for d in r["first"]] for r in ranks)
    assert first != second and first[0] != second[0]                              # each rank its own draws
    assert {d["key"] for d in ranks[0]["first"]}.isdisjoint(d["key"] for d in ranks[1]["first"])


def test_a_test_clip_the_loader_cannot_read_counts_as_wrong(sample_shards, tmp_path):
    """A damaged test sample is skipped by the loader, but not by the metrics: it counts as wrong, and
    metrics.json says it failed in the loader, beside the clip that failed preprocessing."""
    out = tmp_path / "damaged"
    shutil.copytree(sample_shards[0], out)
    shard = sorted(out.glob("fold1-*.tar"))[0]
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    broken = members[0][0].name.split(".")[0]
    with tarfile.open(shard, "w") as tar:
        for member, data in members:
            if member.name == f"{broken}.frames_offsets.npy":
                data = b"not an array"
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    result = train(tiny_config(out, tmp_path / "runs", epochs=1, lr=0, paper_protocol=False))
    fold1 = rows_by_partition(out)["fold1"]
    failed = [r for r in fold1 if r["status"] != "ok"]
    assert result["failed_test_clips"] == {"preprocessing": len(failed), "loader": 1}
    assert result["test"]["samples"] == len(fold1) and result["unscored_test_clips"] == len(failed) + 1
    assert result["test"]["failed_in_loader_keys"] == [broken]
    assert result["test"]["scored_only"]["samples"] == len(fold1) - len(failed) - 1


def test_evaluate_a_checkpoint_and_zero_shot_training(sample_shards, tmp_path):
    from trainer.evaluate import evaluate_checkpoint
    from trainer.models import build_model

    out, _ = sample_shards
    result = train(tiny_config(out, tmp_path, epochs=1))
    run = tmp_path / "sample-tiny-random-fold1"
    again = evaluate_checkpoint(run / "best.pt")
    assert again["uar"] == pytest.approx(result["test"]["uar"]) and again["samples"] == result["test"]["samples"]
    assert (run / "eval-sample-fold1-test.json").is_file() and (run / "eval-sample-fold1-test.png").is_file()
    # prediction on one raw video, through the same face stage and describer as the shards
    from trainer.predict import Predictor, main as predict_main

    predictor = Predictor(run / "best.pt")
    truth = json.loads((_sample_root(out) / "ground_truth.json").read_text())["clips"]
    clip = truth["surprise_00"]
    prediction = predictor(_sample_root(out) / clip["path"])
    assert set(prediction["probabilities"]) == set(predictor.classes)
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert list(prediction["probabilities"].values()) == sorted(prediction["probabilities"].values(), reverse=True)
    assert "jaw" in prediction["description"]
    assert predict_main(["--video", str(_sample_root(out) / truth["hard_no_face"]["path"]),
                         "--checkpoint", str(run / "best.pt")]) == 1
    # every clip of a partition from its raw file (make demo): the truncated one is counted, not first
    from trainer.predict import predict_partition
    from trainer.run_summary import summary_lines

    report = predict_partition(predictor, _sample_root(out) / "manifest.csv", "fold1", log=lambda line: None)
    fold1 = {k: c for k, c in truth.items() if c["partition"] == "fold1"}
    assert report["clips"] == len(fold1) and report["unreadable"] == 1
    assert {c["clip_id"] for c in report["per_clip"]} == set(fold1)
    assert report["true_class_first"] == sum(c["predicted"] == c["label"] for c in report["per_clip"])
    (run / "predict-fold1.json").write_text(json.dumps(report))
    lines = "\n".join(summary_lines(out, run, [], run / "predict-fold1.json"))
    assert f"true class first for {report['true_class_first']} of {len(fold1)} fold1 clips" in lines
    # zero-shot: trained on descriptions only, scored by similarity to the class prompts
    model = build_model("tiny-random", ["happiness", "sadness", "surprise"], supervision="descriptions")
    model.train()
    batch = {"frames": torch.randn(3, 4, 3, 64, 64), "masks": torch.randn(3, 4, 3, 64, 64),
             "landmarks": torch.randn(3, 4, 3, 64, 64), "labels": torch.tensor([0, 1, 2]),
             "descriptions": ["The jaw drops.", "The brows lift.", "The lip corners turn down."]}
    output = model(batch)
    assert set(output["parts"]) == {"description"} and output["logits"].shape == (3, 3)
    output["loss"].backward()
    grads = {n: p.grad for n, p in model.named_parameters() if "text_adapters" in n and "description" in n}
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads.values())
    assert all(p.grad is None for n, p in model.named_parameters() if "text_adapters" in n and "positive" in n)


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_state(sample_shards, tmp_path, capsys):
    from trainer.train import NonFiniteLoss, main as train_main

    out, _ = sample_shards
    # An absurd learning rate overflows the weights within two steps: a real divergence.
    diverging = {"epochs": 3, "lr": 1e30, "warmup_epochs": 0, "grad_clip": 0}
    with pytest.raises(NonFiniteLoss, match="The last good state is .*last.pt") as error:
        train(tiny_config(out, tmp_path, **diverging))
    assert "lower lr" in str(error.value) and "clips " in str(error.value)
    good = load_checkpoint(tmp_path / "sample-tiny-random-fold1" / "last.pt")
    assert good["model"] and all(torch.isfinite(t).all() for t in good["model"].values())
    assert good["history"] and all(np.isfinite(h["train_loss"]) for h in good["history"])
    args = ["--shards", str(out), "--set", "workers=0", "--set", f"runs_dir={tmp_path / 'cli'}"]
    args += [f"--set={key}={value}" for key, value in diverging.items()]
    assert train_main(args) == 1
    assert "error: the loss became nan" in capsys.readouterr().err


def test_without_a_terminal_training_prints_whole_progress_lines(sample_shards, tmp_path, capsys, monkeypatch):
    """Into a log file the trainer writes whole lines (here one per step, the interval set to 0),
    never tqdm's redrawn bar, whose carriage returns flood a log over an hours-long epoch."""
    import trainer.train as train_module

    out, _ = sample_shards
    monkeypatch.setattr(train_module, "PROGRESS_LINE_S", 0.0)
    train(tiny_config(out, tmp_path, epochs=1))
    captured = capsys.readouterr()
    assert "\r" not in captured.out + captured.err
    lines = [line for line in captured.out.splitlines() if "] epoch 1/1: step " in line]
    steps = [int(line.split("step ")[1].split("/")[0]) for line in lines]
    assert steps and steps == list(range(1, len(steps) + 1)), lines
    assert all("clips/s" in line and "left in the epoch" in line for line in lines)


class _FailsToPickle:
    def __reduce__(self):
        raise OSError("disk full (simulated by an object that cannot be written)")


def test_an_interrupted_checkpoint_write_keeps_the_previous_checkpoint(sample_shards, tmp_path):
    from trainer.checkpoint import save_checkpoint

    out, _ = sample_shards
    train(tiny_config(out, tmp_path, epochs=2), stop_after=1)
    last = tmp_path / "sample-tiny-random-fold1" / "last.pt"
    before = last.read_bytes()
    payload = load_checkpoint(last)
    with pytest.raises(OSError, match="disk full"):  # fails after the tensors were partly written
        save_checkpoint(last, {**payload, "zz_unwritable": _FailsToPickle()})
    assert last.read_bytes() == before and not last.with_name("last.pt.tmp").exists()
    assert load_checkpoint(last)["epoch"] == 0


def test_every_model_file_is_loaded_without_unpickling_objects():
    """torch.load only with weights_only=True (or TorchScript / numpy without pickles), everywhere."""
    import re

    offenders = []
    for path in [*ROOT.glob("pipeline/*.py"), *ROOT.glob("trainer/*.py"), *ROOT.glob("bench/*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\btorch\.load\(", line) and "weights_only=True" not in line:
                offenders.append(f"{path.name}:{number}")
            if re.search(r"allow_pickle\s*=\s*True|\bpickle\.loads?\(", line):
                offenders.append(f"{path.name}:{number}")
    assert not offenders, offenders


def test_command_line_values_are_typed():
    from trainer.config import parse_value

    assert parse_value("1e-3") == 0.001 and parse_value("20") == 20 and parse_value("true") is True
    assert parse_value("{use_parsing: false}") == {"use_parsing": False} and parse_value("runs/x") == "runs/x"
    assert resolve("tiny-random", "sample", {"lr": 1, "epochs": 3}).lr == 1.0
    with pytest.raises(ValueError, match="lr must be float"):
        resolve("tiny-random", "sample", {"lr": "fast"})


def test_runs_saved_with_the_old_freeze_clip_switch_still_load():
    from trainer.models import model_config

    assert model_config("tiny-random", freeze_clip=False).train_clip == "all"
    assert model_config("fineclip-b16", freeze_clip=True).train_clip == "none"


def test_every_loader_setting_and_the_clip_length_come_from_the_run_configuration():
    from trainer.config import from_dict, resolve

    config = resolve("tiny-random", "sample", {"crop_scale": [0.5, 1], "flip": False, "shuffle_buffer": 0, "num_frames": 4,
                                               "landmark_style": "points_on_face"})
    assert config.crop_scale == (0.5, 1.0)
    with pytest.raises(ValueError, match="crop_scale must be two numbers"):
        resolve("tiny-random", "sample", {"crop_scale": 0.5})
    model = config.build_model(["happiness", "sadness"])
    data = config.data_config(model)
    assert (data.crop_scale, data.flip, data.shuffle_buffer, data.num_frames, data.landmark_style) == (
        (0.5, 1.0), False, 0, 4, "points_on_face")
    assert data.image_size == model.input_resolution == 64      # the CLIP's own input size, not a preset
    x = torch.zeros(1, 4, 3, 64, 64)
    assert model({"frames": x, "masks": x, "landmarks": x, "descriptions": [""]})["logits"].shape == (1, 2)
    # a run folder written before image_size was derived still loads
    assert from_dict({**config.to_dict(), "image_size": 224}) == config
    # one written before the description branch rebuilds the model it trained, without the branch
    old = {k: v for k, v in config.to_dict().items() if k != "landmark_style"}
    assert from_dict(old).model_options == {**config.model_options, "use_description_branch": False,
                                            "negative_loss": "pairwise"}
    assert from_dict(old).build_model(["happiness", "sadness"]).branches == ["video", "parsing", "landmarks"]
