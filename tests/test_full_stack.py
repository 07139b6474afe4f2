"""The `full` profile end to end through Ray on the CPU, and its weights fetched from hubs on 127.0.0.1.

`python -m pipeline.preprocess … --profile full --allow-cpu` (the entry point `make preprocess`
runs) over a tiny DFEW-like DATA_ROOT built from the sample generator's animated face: clips
00001 and 00002 as official face-crop frame folders beside their raw videos, 00003 as a raw
video only, 00004 a manifest row whose file is not there. The models are the real classes with
random weights (tests/tiny_models.py): S3FD, FAN (2DFAN4) and BiSeNet saved under their real
file names, and a tiny Video-LLaVA saved with save_pretrained.

- `detected`: `--crop detect` from a WEIGHTS_DIR and a local Video-LLaVA folder, downloads off.
  Random S3FD finds boxes everywhere, so every video clip goes through all four models.
- `from_the_hubs`: `--crop official` with nothing on disk beforehand: the face models come
  from a mirror named by DFER_WEIGHTS_URL and Video-LLaVA from a Hugging Face Hub at HF_ENDPOINT,
  both served by tests/local_hub.py on 127.0.0.1. Random weights cannot carry the official
  hashes, so the face files are fetched in-process by the same `check_weights` with the random
  files' SHA-256 as the expected ones, into torch hub's cache, where the run then finds them;
  Video-LLaVA is downloaded by the run itself.
Then the refusals, each a run of the same command that stops before any work: the official
hashes refuse the random face files and a corrupted Hub file is refused, named, in one error;
and with downloads off and nothing on disk one error names every file and where to put it.

Cost on 2 cores: about 225 CPU-seconds in all, most of it the two runs' fixed costs (Ray, and
torch and transformers imported by the driver and each actor; face-alignment's numba decoder
compiled once per face actor); the models themselves see 15 face crops.
"""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from local_hub import HubRepo, LocalHub
from pipeline.shards.files import file_sha256
from pipeline.shards.reader import ShardReader
from pipeline.weights import (BISENET, FAN_2D, HASH_IN_NAME, MIRROR_VARIABLE, S3FD, MissingWeightsError,
                              check_weights)
from tiny_models import save_face_weights, save_tiny_checkpoint

ROOT = Path(__file__).resolve().parent.parent
LABELS = {"00001": "happiness", "00002": "sadness", "00003": "surprise", "00004": "neutral"}
PARTITIONS = {"00001": "fold1", "00002": "fold2", "00003": "fold1", "00004": "fold2"}
CROPPED = ("00001", "00002")          # clips with official face-crop frame folders
FRAMES = 3
TINY_REPO, CORRUPT_REPO, ABSENT_REPO = ("dfer-tests/tiny-video-llava", "dfer-tests/corrupt-video-llava",
                                        "dfer-tests/not-downloaded-video-llava")


# --- the inputs -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dfew_root(tmp_path_factory):
    """(DATA_ROOT, manifest): short, small clips so that FAN and BiSeNet on the CPU take seconds."""
    from pipeline.inputs.manifest import write_manifest
    from pipeline.sample.face_animation import FaceWarper, relaxed_rest_pose
    from pipeline.sample.generate import encode_video, load_faces, locate_face, plan_clips, render_clip

    root = tmp_path_factory.mktemp("full") / "DFEW"
    photo = load_faces([])[0]
    neutral = locate_face(photo)
    rest, warper = relaxed_rest_pose(neutral, 0.8), FaceWarper(photo, neutral)
    plans = {p.label: p for p in plan_clips(0, 1, 1)}
    for clip_id in ("00001", "00002", "00003"):
        plan = dataclasses.replace(plans[LABELS[clip_id]], num_frames=FRAMES, onset=0, apex=FRAMES - 1, offset=None,
                                   blinks=[], flip=False)
        frames, _ = render_clip(plan, rest, warper)
        small = np.stack([cv2.resize(f, (160, 120), interpolation=cv2.INTER_AREA) for f in frames])
        (root / "Clip/original").mkdir(parents=True, exist_ok=True)
        encode_video(small, root / f"Clip/original/{clip_id}.mp4", "h264", plan.fps)
        if clip_id in CROPPED:
            folder = root / f"Clip/clip_224x224/{clip_id}"
            folder.mkdir(parents=True)
            for t, frame in enumerate(frames):   # the face's middle, 112 px (resized whole to 224 by the run)
                h, w = frame.shape[:2]
                crop = cv2.resize(frame[h // 8: h - h // 8, (w - h) // 2 + h // 8: (w + h) // 2 - h // 8], (112, 112))
                cv2.imwrite(str(folder / f"{clip_id}_{t + 1:05d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    manifest = root.parent / "dfew_full.csv"
    write_manifest(manifest, [dict(clip_id=c, path=f"Clip/original/{c}.mp4", label=LABELS[c], partition=PARTITIONS[c],
                                   frames=FRAMES) for c in LABELS], dataset="dfew")
    return root, manifest


@pytest.fixture(scope="module")
def face_weights(tmp_path_factory) -> Path:
    return save_face_weights(tmp_path_factory.mktemp("face-weights"))


@pytest.fixture(scope="module")
def tiny_videollava(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-video-llava"))


@pytest.fixture(scope="module")
def hub(face_weights, tiny_videollava):
    """The local hubs: the face files at /weights/, the tiny Video-LLaVA as TINY_REPO and, with its
    weights corrupted in transit, as CORRUPT_REPO."""
    with LocalHub() as served:
        served.weights = {p.name: p.read_bytes() for p in face_weights.iterdir()}
        served.repos[TINY_REPO] = HubRepo.from_folder(tiny_videollava)
        served.repos[CORRUPT_REPO] = HubRepo.from_folder(tiny_videollava, corrupt={"model.safetensors"})
        yield served


def run_env(tmp: Path, online: bool, **extra: str) -> dict[str, str]:
    """The environment of one run: empty caches of its own, downloads on or off, nothing leaving 127.0.0.1."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DFER_OFFLINE", "WEIGHTS_DIR", "HF_ENDPOINT",
                        MIRROR_VARIABLE, "RAY_ADDRESS", "DFER_ALLOW_CPU")}
    # One thread per actor (Ray's own default for a 1-CPU actor): the face and describe actors share
    # 2 cores, and PyTorch's thread pools spinning against each other make tiny models 10x slower.
    env.update(TORCH_HOME=str(tmp / "torch"), HF_HOME=str(tmp / "hf"), RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1",
               HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
               HF_HUB_DISABLE_XET="1")
    if not online:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DFER_OFFLINE="1")
    env.update(extra)
    return env


def preprocess_cli(dfew_root, out: Path, env: dict, *options: str, timeout: int = 480):
    """`python -m pipeline.preprocess <manifest> … --profile full --allow-cpu`, as `make preprocess` runs it."""
    root, manifest = dfew_root
    command = [sys.executable, "-m", "pipeline.preprocess", str(manifest), "--data-root", str(root), "--out", str(out),
               "--profile", "full", "--allow-cpu", "--workers", "1", "--shard-size", "2", "--detect-every", "2",
               "--no-progress", *options]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return done, time.perf_counter() - began


@pytest.fixture(scope="module")
def detected(dfew_root, face_weights, tiny_videollava, tmp_path_factory):
    """--crop detect, every model from disk (WEIGHTS_DIR, a Video-LLaVA folder), downloads off."""
    tmp = tmp_path_factory.mktemp("detected")
    # Random S3FD cannot confirm a face frame by frame: --min-face-share 0 keeps every clip it found a face
    # in, so all four models still run.
    done, seconds = preprocess_cli(dfew_root, tmp / "dfew", run_env(tmp, online=False), "--crop", "detect",
                                   "--weights-dir", str(face_weights), "--describer-model", str(tiny_videollava),
                                   "--min-face-share", "0")
    print(f"detect run: {seconds:.1f} s")
    return tmp / "dfew", done


@pytest.fixture(scope="module")
def from_the_hubs(dfew_root, hub, tmp_path_factory):
    """--crop official with empty caches: FAN and BiSeNet fetched from the mirror into torch hub's cache
    (checked against the served files' SHA-256), then the run, which downloads Video-LLaVA from the Hub."""
    tmp = tmp_path_factory.mktemp("hubs")
    served = {f: dataclasses.replace(f, sha256=hashlib.sha256(hub.weights[f.name]).hexdigest()) for f in (FAN_2D, BISENET)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in run_env(tmp, online=True, **{MIRROR_VARIABLE: hub.weights_url}).items():
            patch.setenv(name, value)
        for name in ("HF_HUB_OFFLINE", "DFER_OFFLINE", "WEIGHTS_DIR"):
            patch.delenv(name, raising=False)
        fetched = check_weights(served.values())
    env = run_env(tmp, online=True, HF_ENDPOINT=hub.url, **{MIRROR_VARIABLE: hub.weights_url})
    done, seconds = preprocess_cli(dfew_root, tmp / "dfew", env, "--crop", "official", "--describer-model", TINY_REPO)
    print(f"official run from the hubs: {seconds:.1f} s")
    return tmp, done, fetched


# --- helpers ----------------------------------------------------------------------------------
def status_rows(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(out.glob("*.status.jsonl")) for line in p.read_text().splitlines()]


def assert_one_status_row_each(out: Path) -> dict[str, dict]:
    rows = status_rows(out)
    assert sorted(r["clip_id"] for r in rows) == sorted(LABELS)            # every manifest row, exactly once
    for row in rows:
        assert row["status"] in ("ok", "failed")
        assert (row["status"] == "ok") == (row["reason"] == ""), row          # a failure always has its reason
    return {r["clip_id"]: r for r in rows}


def assert_verify_ok(out: Path, capsys) -> None:
    from pipeline.verify import main as verify_main

    capsys.readouterr()
    code = verify_main([str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "verify: OK" in printed, printed


def assert_full_samples(out: Path, clip_ids: list[str], crop: str, model: str) -> None:
    clips = {clip.meta["clip_id"]: clip for clip in ShardReader(out)}
    assert sorted(clips) == sorted(clip_ids)
    for clip in clips.values():
        n = clip.num_frames
        trimmed = clip.meta["quality"].get("trimmed", {"start": 0, "end": 0})   # crop detect: faceless ends cut
        assert n == FRAMES - trimmed["start"] - trimmed["end"] and clip.meta["crop"] == {"mode": crop}
        assert clip.frames().shape == (n, 224, 224, 3)
        assert clip.landmarks.shape == (n, 68, 2) and np.isfinite(clip.landmarks).all()
        assert ((clip.landmarks_conf >= 0) & (clip.landmarks_conf <= 1)).all()
        masks = clip.masks()
        assert masks.shape == (n, 224, 224) and masks.max() < 19
        record = clip.description_record
        assert record["backend"] == "videollava" and record["model"] == model
        assert len(record["frame_indices"]) == 8 and isinstance(record["raw_text"], str)
        assert isinstance(clip.description, str)


# --- the runs ---------------------------------------------------------------------------------
def test_full_profile_through_ray_detecting_faces(detected, dfew_root, face_weights, tiny_videollava, capsys):
    out, done = detected
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "no GPU" in done.stdout and "profile full" in done.stdout
    rows = assert_one_status_row_each(out)
    assert rows["00004"]["reason"] == "missing_file"
    # Random S3FD scores boxes everywhere, so a face track is found in each video; were one not
    # found the clip would be recorded as no_face, which the row check above allows.
    assert all(rows[c]["status"] == "ok" or rows[c]["reason"] == "no_face" for c in ("00001", "00002", "00003"))
    ok = [c for c, r in rows.items() if r["status"] == "ok"]
    assert ok, "random S3FD found no face in any clip"
    assert_verify_ok(out, capsys)
    assert_full_samples(out, ok, "detect", str(tiny_videollava))

    index = json.loads((out / "index.json").read_text())
    assert index["config"]["profile"] == "full" and index["config"]["crop"] == "detect"
    models = index["models"]
    for kind, file in (("detector", S3FD), ("landmarks", FAN_2D), ("masks", BISENET)):
        assert models[kind]["weights"] == file.name
        assert models[kind]["sha256"] == file_sha256(face_weights / file.name)
    assert models["description"]["backend"] == "videollava" and models["description"]["model"] == str(tiny_videollava)


def test_full_profile_with_weights_from_the_hubs(from_the_hubs, hub, capsys):
    tmp, done, fetched = from_the_hubs
    out = tmp / "dfew"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    # The face files: downloaded from the mirror into torch hub's cache, byte for byte, and found there by the run.
    checkpoints = tmp / "torch" / "hub" / "checkpoints"
    for file in (FAN_2D, BISENET):
        assert fetched[file.name] == checkpoints / file.name
        assert (checkpoints / file.name).read_bytes() == hub.weights[file.name]
        assert ("GET", f"/weights/{file.name}") in hub.requests
    assert ("GET", f"/weights/{S3FD.name}") not in hub.requests       # official crops: no detector, no download
    assert not list(checkpoints.glob("*.partial"))
    # Video-LLaVA: downloaded by the run into the Hugging Face cache, every file under its ETag.
    repo = hub.repos[TINY_REPO]
    assert ("GET", f"/api/models/{TINY_REPO}/revision/main") in hub.requests
    snapshot = tmp / "hf" / "hub" / "models--dfer-tests--tiny-video-llava" / "snapshots" / repo.commit
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (snapshot / name).read_bytes() == repo.files[name]
        assert (snapshot / name).resolve().name == repo.etag(name)

    rows = assert_one_status_row_each(out)
    assert {c: r["reason"] for c, r in rows.items()} == {"00001": "", "00002": "", "00003": "no_official_crop",
                                                        "00004": "missing_file"}
    assert_verify_ok(out, capsys)
    assert_full_samples(out, list(CROPPED), "official", TINY_REPO)
    index = json.loads((out / "index.json").read_text())
    models = index["models"]
    assert models["detector"] is None
    for kind, file in (("landmarks", FAN_2D), ("masks", BISENET)):
        assert models[kind]["sha256"] == hashlib.sha256(hub.weights[file.name]).hexdigest()
    assert models["description"]["model"] == TINY_REPO and models["description"]["revision"] == repo.commit
    assert all(clip.description_record["revision"] == repo.commit for clip in ShardReader(out))


def test_wrong_and_corrupted_downloads_are_refused_by_name(dfew_root, hub, tmp_path):
    """The mirror serves random face files, which the official hashes in their names refuse (BiSeNet has
    none: taken); the Hub serves Video-LLaVA with corrupted weights. One error names them all."""
    weights = tmp_path / "weights"
    env = run_env(tmp_path, online=True, HF_ENDPOINT=hub.url, **{MIRROR_VARIABLE: hub.weights_url})
    done, seconds = preprocess_cli(dfew_root, tmp_path / "dfew", env, "--crop", "detect", "--weights-dir", str(weights),
                                   "--describer-model", CORRUPT_REPO)
    assert done.returncode == 1
    error = done.stderr[done.stderr.index("error: "):]
    assert done.stderr.count("error: ") == 1 and "3 model weight file(s) missing" in error
    for file in (S3FD, FAN_2D):
        assert f"{file.name}: the file downloaded from {hub.weights_url}{file.name} has SHA-256" in error
        assert f"(mirror of {file.url})" in error
        assert file.expected_sha256() in error and "refused and deleted" in error
    assert f"{CORRUPT_REPO}: downloaded file(s) refused and deleted from the cache: model.safetensors" in error
    assert f"WEIGHTS_DIR={weights}" in error
    # Nothing refused is left behind; the file with no hash to check was taken.
    assert sorted(p.name for p in weights.iterdir()) == [BISENET.name]
    repo = hub.repos[CORRUPT_REPO]
    blobs = tmp_path / "hf" / "hub" / "models--dfer-tests--corrupt-video-llava" / "blobs"
    assert not (blobs / repo.etag("model.safetensors")).exists() and (blobs / repo.etag("config.json")).exists()
    assert not (tmp_path / "dfew").exists()                      # stopped before any work
    print(f"refusals: {seconds:.1f} s")


def test_offline_and_missing_one_error_names_everything(dfew_root, tmp_path, monkeypatch, capsys):
    """The same command's main(), in this process (downloads are off here, see conftest): it stops
    before starting Ray, so a subprocess would only add its imports."""
    from huggingface_hub import constants

    from pipeline.preprocess import main as preprocess_main

    for name, value in run_env(tmp_path, online=False).items():
        monkeypatch.setenv(name, value)
    weights = tmp_path / "weights"
    weights.mkdir()
    root, manifest = dfew_root
    code = preprocess_main([str(manifest), "--data-root", str(root), "--out", str(tmp_path / "dfew"), "--profile",
                            "full", "--allow-cpu", "--crop", "detect", "--weights-dir", str(weights),
                            "--describer-model", ABSENT_REPO, "--no-progress"])
    assert code == 1
    error = capsys.readouterr().err
    assert error.count("error: ") == 1 and "4 model weight file(s) missing" in error
    for file in (S3FD, FAN_2D, BISENET):
        assert f"{file.name}: {file.model}" in error and f"download: {file.url}" in error
    assert error.count("downloads are off") == 4
    assert f"put them in WEIGHTS_DIR={weights}" in error
    assert f"{ABSENT_REPO}: Video-LLaVA" in error and f"hf download {ABSENT_REPO}" in error
    assert f"put it in the Hugging Face cache, {constants.HF_HUB_CACHE}" in error and "--describer-model" in error
    assert not (tmp_path / "dfew").exists()


# --- the download checks, in-process ------------------------------------------------------------
def test_the_hash_in_a_name_follows_torch_hub():
    import torch.hub

    assert HASH_IN_NAME.pattern == torch.hub.HASH_REGEX.pattern
    assert S3FD.expected_sha256() == "619a316812" and FAN_2D.expected_sha256() == "11f355bf06"
    assert BISENET.expected_sha256() is None
    assert dataclasses.replace(BISENET, sha256="AB" * 32).expected_sha256() == "ab" * 32


def test_the_mirror_replaces_the_official_address(monkeypatch):
    monkeypatch.delenv(MIRROR_VARIABLE, raising=False)
    assert S3FD.download_url() == S3FD.url                      # the default: the official address
    monkeypatch.setenv(MIRROR_VARIABLE, "http://models.lab/dfer")
    assert S3FD.download_url() == "http://models.lab/dfer/s3fd-619a316812.pth"
    monkeypatch.setenv(MIRROR_VARIABLE, "file:///shared/weights/")
    assert BISENET.download_url() == "file:///shared/weights/parsing_bisenet.pth"


def test_downloads_are_checked_before_they_take_their_names(hub, tmp_path, monkeypatch):
    for name in ("HF_HUB_OFFLINE", "DFER_OFFLINE", "WEIGHTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(MIRROR_VARIABLE, hub.weights_url)
    expected = {name: hashlib.sha256(data).hexdigest() for name, data in hub.weights.items()}
    good = dataclasses.replace(FAN_2D, sha256=expected[FAN_2D.name])
    corrupt = dataclasses.replace(S3FD, sha256=expected[S3FD.name])
    cut = dataclasses.replace(BISENET, sha256=expected[BISENET.name])
    monkeypatch.setattr(hub, "corrupt_weights", {S3FD.name})
    monkeypatch.setattr(hub, "truncated_weights", {BISENET.name})
    folder = tmp_path / "weights"
    with pytest.raises(MissingWeightsError) as raised:
        check_weights([good, corrupt, cut], weights_dir=folder)
    message = str(raised.value)
    assert raised.value.missing == [corrupt, cut]
    assert f"{S3FD.name}: the file downloaded from {hub.weights_url}{S3FD.name} has SHA-256" in message
    assert f"{BISENET.name}: the download from {hub.weights_url}{BISENET.name} ended after" in message
    assert sorted(p.name for p in folder.iterdir()) == [FAN_2D.name]     # no partial or refused file
    assert (folder / FAN_2D.name).read_bytes() == hub.weights[FAN_2D.name]
    # Found on disk the next time: taken as it is, not downloaded again.
    before = len(hub.requests)
    assert check_weights([good], weights_dir=folder) == {FAN_2D.name: folder / FAN_2D.name}
    assert len(hub.requests) == before
