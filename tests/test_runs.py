"""Runs as experiments, and a dataset of your own end to end, through `make` as a user types it.

Run folders named from the configuration (trainer/run_dir.py) and refused to another
configuration; partition schemes; a manifest of three classes of our own with train / val / test
partitions through make preprocess, train (SIGKILLed after its first checkpoint, then resumed by
the same command), eval and predict, with no PROFILE or MODEL given.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from trainer.config import resolve
from trainer.data import dataset_folds, split_partitions
from trainer.run_dir import RunConflict, default_name, plan, run_folder, shards_fingerprint

ROOT = Path(__file__).resolve().parent.parent


def make_env() -> dict[str, str]:
    """This checkout's code first on the path, whatever the environment's editable install points at."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def make_command(*arguments: str) -> subprocess.CompletedProcess:
    """`make <arguments>` in the repository, as a user types it."""
    return subprocess.run(["make", "--no-print-directory", *arguments], cwd=ROOT, env=make_env(), capture_output=True,
                          text=True, timeout=600)


def needs_make_env():
    """Every make target that runs Python first checks .venv against the lock; without the stamp it would
    rebuild the environment, which a test must not do."""
    import hashlib

    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()[:16]
    if shutil.which("make") is None or not (ROOT / ".venv" / f".installed-{digest}").exists():
        pytest.skip("needs make and the environment `make env` builds")


def test_run_names_differ_by_configuration_and_a_folder_refuses_another(tmp_path):
    base = resolve("tiny", "sample", {"fold": 1})
    assert default_name(base) == "sample-tiny"                             # the plain command keeps its name
    assert run_folder(base) == Path("runs/sample-tiny-fold1")
    a = resolve("tiny", "sample", {"fold": 1, "lr": 1e-4})
    b = resolve("tiny", "sample", {"fold": 1, "lr": 2e-4})
    assert len({default_name(a), default_name(b), default_name(base)}) == 3
    assert default_name(a).startswith("sample-tiny-")
    assert default_name(resolve("tiny", "sample", {"fold": 1, "runs_dir": str(tmp_path)})) == "sample-tiny"
    assert default_name(resolve("tiny", "sample", {"fold": 1, "shards": "shards/sample"})) == "sample-tiny"
    assert run_folder(a, "mine") == Path("runs/mine-fold1")
    with pytest.raises(ValueError, match="one folder name"):
        run_folder(a, "../elsewhere")
    # a folder holding `a` is refused to `b`, and named in the message with what differs
    folder = tmp_path / "mine-fold1"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(a.to_dict()))
    with pytest.raises(RunConflict, match=r"lr 0.0001 -> 0.0002.*OVERWRITE=1"):
        plan(b, folder)
    assert plan(b, folder, overwrite=True).clear
    assert plan(a, folder).action == "start"        # stopped before its first checkpoint: starts again
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "index.json").write_text(json.dumps({"shards": [{"name": "fold1-000000", "sha256": "ab"}]}))
    c = resolve("tiny", "sample", {"fold": 1, "shards": str(shards)})
    (folder / "config.json").write_text(json.dumps(c.to_dict()))
    (folder / "last.pt").write_bytes(b"")
    (folder / "run.json").write_text(json.dumps({"shards_fingerprint": shards_fingerprint(shards), "world_size": 1}))
    assert plan(c, folder).action == "resume"
    with pytest.raises(RunConflict, match="begun with 1 processes, not 2"):
        plan(c, folder, world=2)
    (shards / "index.json").write_text(json.dumps({"shards": [{"name": "fold1-000000", "sha256": "cd"}]}))
    with pytest.raises(RunConflict, match="written again since it began"):
        plan(c, folder)


def test_partition_schemes_the_trainer_reads_and_refuses():
    folds = {"partitions": ["fold1", "fold2", "fold3"]}
    assert split_partitions(folds, 2) == {"train": ["fold1", "fold3"], "val": [], "test": ["fold2"]}
    assert split_partitions({"partitions": ["train", "test"]}, 1) == {"train": ["train"], "val": [], "test": ["test"]}
    assert split_partitions({"partitions": ["test", "val", "train"]}, 1) == \
        {"train": ["train"], "val": ["val"], "test": ["test"]}
    # FOLD=all: the folds that hold clips (a small sample's manifest leaves fold4 and fold5 empty)
    assert dataset_folds({"partitions": [f"fold{k}" for k in range(1, 6)],
                          "shards": [{"partition": "fold1"}, {"partition": "fold3"}, {"partition": "fold2"}]}) == [1, 2, 3]
    assert dataset_folds({"partitions": ["train", "val", "test"], "shards": [{"partition": "train"}]}) == [1]
    for partitions in (["train", "dev", "eval"], ["train", "val"], ["fold1"], ["train", "test", "extra"]):
        with pytest.raises(ValueError, match=f"partitions {', '.join(partitions)}: make train understands"):
            split_partitions({"partitions": partitions}, 1)


def _checkpoint_epoch(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return None


def _own_manifest(sample_data: Path, root: Path) -> Path:
    """Nine of the sample's videos as a dataset of our own: three classes, partitions train / val / test."""
    truth = json.loads((sample_data / "ground_truth.json").read_text())["clips"]
    ours = {"smile": ("happiness_00", "happiness_01", "disgust_00"), "frown": ("sadness_00", "sadness_01", "anger_00"),
            "gape": ("surprise_00", "surprise_01", "fear_00")}
    (root / "clips").mkdir(parents=True)
    rows = []
    for label, clips in ours.items():
        for clip, partition in zip(clips, ("train", "val", "test")):
            source = sample_data / truth[clip]["path"]          # a video file or a folder of frames
            (shutil.copytree if source.is_dir() else shutil.copy)(source, root / "clips" / source.name)
            rows.append([f"{label}_{clip}", f"clips/{source.name}", label, partition])
    manifest = root / "mine.csv"
    with manifest.open("w", newline="") as f:
        f.write("# classes: smile, frown, gape\n")
        writer = csv.writer(f)
        writer.writerow(["clip_id", "path", "label", "partition"])
        writer.writerows(rows)
    return manifest


def test_your_own_dataset_through_make_alone_and_a_killed_run_resumed(sample_data, tmp_path):
    """make preprocess -> train -> eval -> predict on a manifest of our own, with no PROFILE or MODEL:
    DATA_ROOT is the manifest's folder, the profile follows the GPU, the model is tiny, the run folder is
    named after the manifest, val chooses the epoch and is never trained on. The training is SIGKILLed
    after its first epoch's checkpoint, and the same command resumes it from there."""
    needs_make_env()
    manifest = _own_manifest(sample_data, tmp_path / "mine")
    out, runs = tmp_path / "shards", tmp_path / "runs"
    common = [f"DATASET={manifest}", f"OUT={out}"]
    gpu = torch.cuda.is_available()   # the full profile would want its weights: this test runs the cpu one
    pre = make_command("preprocess", *common, "SHARD_SIZE=3", "WORKERS=2", *(["PROFILE=cpu"] if gpu else []))
    assert pre.returncode == 0, pre.stdout[-3000:] + pre.stderr[-3000:]
    if not gpu:
        assert "profile cpu (your own dataset and no GPU is present" in pre.stdout
    index = json.loads((out / "index.json").read_text())
    assert index["dataset"] == "mine" and index["classes"] == ["smile", "frown", "gape"]
    assert index["samples"] == {"train": 3, "val": 3, "test": 3}

    # 4 frames a clip: seconds a run
    run = [*common, "EPOCHS=2", f"TRAIN_ARGS=--set runs_dir={runs} --set workers=0 --set num_frames=4"]
    config = resolve("tiny", "mine", {"fold": 1, "shards": str(out), "epochs": 2, "workers": 0, "num_frames": 4,
                                      "runs_dir": str(runs)})
    folder = run_folder(config)
    assert folder.name.startswith("mine-tiny-") and folder.name.endswith("-fold1")
    with (tmp_path / "killed.log").open("w") as log:
        killed = subprocess.Popen(["make", "--no-print-directory", "train", *run], cwd=ROOT, env=make_env(), stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while killed.poll() is None and time.monotonic() < deadline:
            epoch = _checkpoint_epoch(folder / "last.pt")
            if epoch is not None and epoch >= 0:                  # the first epoch's checkpoint is written
                break
            time.sleep(0.1)
        os.killpg(killed.pid, signal.SIGKILL)                     # make and the trainer, mid-run
        killed.wait(timeout=30)
    first = (tmp_path / "killed.log").read_text()
    assert _checkpoint_epoch(folder / "last.pt") == 0 and not (folder / "metrics.json").exists(), first[-3000:]
    assert "model tiny (the default for a dataset of your own" in first
    assert "3 training clips" in first                                # the train partition only

    trained = make_command("train", *run)                            # the same command: resumed
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert f"{folder}: stopped before the end: resuming from its last.pt" in trained.stdout
    assert "resuming after epoch 1 of 2" in trained.stdout
    assert [json.loads(line)["epoch"] for line in (folder / "log.jsonl").read_text().splitlines()] == [1, 2]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["dataset"] == "mine" and metrics["epochs"] == 2 and metrics["test"]["samples"] == 3
    assert metrics["protocols"]["val"]["selection"] == "best UAR on the val partition"
    assert metrics["protocols"]["val"]["trained_on"] == "the train partition (the val partition validates)"
    assert plan(config, folder).action == "finished"   # the same command once more reports it, trains nothing
    assert [p.name for p in runs.iterdir()] == [folder.name]

    evaluated = make_command("eval", *run)
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    scored = json.loads((folder / "eval-mine-fold1-test.json").read_text())
    assert scored["uar"] == pytest.approx(metrics["test"]["uar"]) and scored["samples"] == 3

    predicted = make_command("predict", *run)
    assert predicted.returncode == 0, predicted.stdout[-3000:] + predicted.stderr[-3000:]
    report = json.loads((folder / "predict-test.json").read_text())
    assert report["partition"] == "test" and report["clips"] == 3 and report["unreadable"] == 0
    assert {c["label"] for c in report["per_clip"]} == {"smile", "frown", "gape"}
