"""bench/gpu_check.py's dry run: every part's code path on the CPU with tiny inputs, so the GPU check
cannot rot between the rare runs on a GPU machine (docs/benchmarks.md, "GPU check")."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.py"


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "DFER_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu-check")
    run = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def report(dry_run) -> dict:
    return json.loads((dry_run / "gpu_check.json").read_text())


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def test_dry_run_records_the_environment(report):
    env = report["environment"]
    assert report["mode"].startswith("dry-run")
    assert env["device"] == "cpu" and env["torch"] and env["date"]
    assert "commit" in env and "cuda" in env and "packages" in env
    assert set(report["parts"]) == {"face", "describe", "training"}
    for part in report["parts"].values():
        assert "skipped" not in part and "error" not in part, part


def test_face_stage_part(report):
    face = report["parts"]["face"]
    assert {v["workers"] for v in face["variants"]} == {1, 2}
    for variant in face["variants"]:
        assert variant["statuses"] == {"ok": variant["clips"]} and variant["clips"] >= 1, variant
        assert _number(variant["frames_per_s"]) and _number(variant["models_frames_per_s"])
        assert all(_number(variant["ms_per_frame"][k]) for k in ("decode", "detect", "landmarks", "masks"))
        # The random S3FD finds nothing; every searched frame got the generator's box instead.
        assert variant["detector"]["searched"] >= variant["clips"]
        assert variant["detector"].get("found_by_network", 0) == 0
    assert face["anchors"]["py-feat"]["frames_per_s"] == 355 and face["anchors"]["OpenFace 3.0"]["frames_per_s"] == 18


def test_describe_part_covers_both_backends(report, dry_run):
    part = report["parts"]["describe"]
    assert part["dataset_clips"] == {"MAFW": 9172, "DFEW": 11697, "FERV39k": 38935}
    cases = {case["backend"]: case for case in part["cases"]}
    assert set(cases) == {"videollava", "qwen2.5-vl"}
    for case in cases.values():
        assert "error" not in case and case["placement"] == ["cpu float32"], case
        (run,) = case["runs"]
        assert run["batch_size"] == 2 and run["new_tokens"] == [64], "every clip generates exactly 64 new tokens"
        assert _number(run["clips_per_s"]) and _number(run["batch_s"]) and _number(run["prefill_s"])
        assert set(run["gpu_hours"]) == {"MAFW", "DFEW", "FERV39k"} and all(map(_number, run["gpu_hours"].values()))
        assert case["best"]["gpu_hours"] == run["gpu_hours"]
    assert cases["videollava"]["runs"][0]["video_tokens_per_clip"] == 8 * 5          # tiny: 8 frames × (4 + 1)
    assert cases["qwen2.5-vl"]["runs"][0]["video_tokens_per_clip"] == 2 * 2 ** 2     # 4 frames of 56 px
    assert part["vllm"]["measured"] is False and part["vllm"]["why"]
    alone = json.loads((dry_run / "gpu_describe.json").read_text())   # also written on its own
    assert alone["benchmark"] == "gpu_describe" and alone["cases"] == part["cases"]


def test_training_part(report):
    runs = {run["model"]: run for run in report["parts"]["training"]["runs"]}
    assert set(runs) == {"tiny", "tiny-dferclip"}
    assert runs["tiny"]["recipe"] == "ours" and runs["tiny"]["optimizer"] == "adamw"
    assert runs["tiny-dferclip"]["recipe"] == "reference" and runs["tiny-dferclip"]["optimizer"] == "sgd"
    for run in runs.values():
        assert _number(run["step_s"]) and run["steps_timed"] >= 1 and run["batch_size"] == 2


def test_without_a_gpu_the_real_check_refuses_and_says_why(tmp_path):
    env = {**_env(), "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "--dry-run" in run.stderr
    assert not (tmp_path / "gpu_check.json").exists()
