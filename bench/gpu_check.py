"""GPU check: the `full` profile's face stage, the video-LLM describers and two training steps, timed on one GPU.

    python bench/gpu_check.py                       # on a GPU machine; ~6 min on one H100/H200 (≤ 8 min)
    python bench/gpu_check.py --parts describe      # only some parts: face, describe, training
    python bench/gpu_check.py --dry-run --out DIR   # every part on the CPU with tiny inputs, ~1 min (CI)

Writes `bench/results/gpu_check.json` (or `--out DIR/gpu_check.json`), rewritten after each part so
a run cut short keeps what it finished: the device, torch/CUDA/cuDNN versions, the date, the git
commit, and per part its figures, or `"skipped": reason` where a package it needs is missing (the
other parts still run), or `"error"` with a traceback. Nothing is downloaded: every model is built
from its real architecture with random weights. No Ray is needed: the face stage runs in this
process (and in worker processes for the multi-worker variant) exactly as a Ray actor runs it.

(a) face: S3FD + FAN (2DFAN4) + BiSeNet, the `full` profile's face backends
    (pipeline/face/*.py, loaded by `FaceStage.setup` from random weights saved under the real file
    names), run by `pipeline.run.stages.FaceStage.process` on generated 1280×720 H.264 clips
    (pipeline/sample's face animation, a synthetic drawn face where dlib or scikit-image is missing):
    decode, detect, track, crop, landmarks, masks, encode, write. frames/s end to end, and the
    three models alone (detect + landmarks + masks seconds), per variant: one worker with the
    pipeline's settings (detector on every 5th frame), one worker with the detector on every
    frame, and several workers sharing the GPU (as Ray's face actors with fractional GPUs do).
    S3FD with random weights finds no face, so its classifier heads are set to "background"
    everywhere (its cost is unchanged) and the benchmark's detector wrapper reports the
    generator's true face box for each searched frame after running the real network and
    post-processing; tracking, crops, FAN and BiSeNet then work on real face crops.
(b) describe: each describer backend at its published configuration with random weights, built
    directly on the GPU in bf16 (no CPU copy): Video-LLaVA-7B (LanguageBind/Video-LLaVA-7B-hf: a
    Llama-2-7B text model, two CLIP ViT-L/14 224 towers, the projector), Qwen2.5-VL-7B-Instruct and
    Qwen2.5-VL-3B-Instruct (their config.json values, written in `qwen25vl_config`), driven through
    the pipeline's own `describe` (frames, processor, prompt, greedy generation, emotion filter) with
    each backend's real frames (Video-LLaVA 8 at 224 px; Qwen2.5-VL 16 at 336 px) and exactly 64 new
    tokens, at batch sizes 1, 8 and 32: clips/s, prefill, peak memory, and the projected GPU-hours
    for MAFW (9,172 clips), DFEW (11,697) and FERV39k (38,935). Also written on its own to
    `gpu_describe.json` beside gpu_check.json. Tokenizers are word-level stand-ins built offline with
    the checkpoints' special-token ids (the prompt about as long as the real one). vLLM is not
    driven (noted in the JSON).
(c) training: a few steps (after warm-up) of fineclip-b16 (recipes `ours` and `paper`: AdamW, bf16
    autocast) and dferclip-b32 (recipe `reference`: SGD, fp32) at the recipes' batch sizes, on synthetic
    uint8 batches (bench/trainer_step.py's), with the trainer's own optimiser and step
    (trainer.train.make_optimizer, optimizer_step): step time and peak GPU memory.

Each part stops its timed loop at its share of the time budget (`--budget-s`, 420 s by default),
so the whole run stays within 8 minutes even on a slower GPU; what it managed is recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import queue
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, git_commit, log, write_json  # noqa: E402

PARTS = ("face", "describe", "training")
# clips per dataset (the manifests' rows), for the projected GPU-hours of the descriptions
DATASET_CLIPS = {"MAFW": 9172, "DFEW": 11697, "FERV39k": 38935}
NEW_TOKENS = 64
FACE_ANCHORS = {
    "py-feat": {"frames_per_s": 355, "note": "py-feat's own report for its fastest detector stack, batched, "
                                             "on a recent GPU"},
    "OpenFace 3.0": {"frames_per_s": 18, "note": "OpenFace 3.0's reported throughput"},
}
# Share of the time budget each part's timed loops may use (set-up, clip generation and model
# building come on top and are bounded by the fixed sizes below).
BUDGET_SHARE = {"face": 0.3, "describe": 0.5, "training": 0.2}

# Fixed sizes, chosen for one H100/H200; the dry run's keep every code path at a tiny cost.
SETTINGS = {
    "gpu": {
        "face": {"size": (1280, 720), "clips": 16, "frames": 75, "rendered": 25, "fps": 25, "workers": 4,
                 "warmup": True, "every_frame_variant": True},
        "describe": {"cases": (("videollava", "7b"), ("qwen2.5-vl", "7b"), ("qwen2.5-vl", "3b")),
                     "batch_sizes": (1, 8, 32), "batches": 2, "clips": 16, "clip_frames": 48, "warmup": True},
        "training": {"cases": (("fineclip-b16", "ours"), ("fineclip-b16", "paper"), ("dferclip-b32", "reference")),
                     "warmup": 2,
                     "steps": 5, "batch_size": None},
    },
    "dry": {
        "face": {"size": (320, 240), "clips": 2, "frames": 1, "rendered": 2, "fps": 25, "workers": 2,
                 "warmup": False, "every_frame_variant": False},
        "describe": {"cases": (("videollava", "tiny"), ("qwen2.5-vl", "tiny")), "batch_sizes": (2,),
                     "batches": 1, "clips": 2, "clip_frames": 6, "warmup": False},
        "training": {"cases": (("tiny", "ours"), ("tiny-dferclip", "reference")), "warmup": 1, "steps": 1,
                     "batch_size": 2},
    },
}


# ------------------------------------------------------------------------------ environment
def package_versions() -> dict[str, str | None]:
    import importlib.metadata

    versions = {}
    for name in ("torch", "transformers", "tokenizers", "face-alignment", "facexlib", "av", "openai-clip", "ray",
                 "numpy", "dlib", "scikit-image"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        import cv2

        versions["cv2"] = cv2.__version__
    except ImportError:
        versions["cv2"] = None
    return versions


def environment(device: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {"device": device, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **git_commit(),
                           "torch": torch.__version__, "cuda": torch.version.cuda,
                           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                           "packages": package_versions()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   gpu_count=torch.cuda.device_count(), tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                   tf32_cudnn=torch.backends.cudnn.allow_tf32)
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            env["driver"] = None
    env["ray"] = ("installed (not used: the stages run directly in this process)" if env["packages"]["ray"]
                  else "not installed (not needed: the stages run directly in this process)")
    return env


class MissingPackage(Exception):
    """A package one part needs is not installed: the part is skipped, the others run."""


def need(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingPackage(f"missing package(s): {', '.join(missing)}")


def synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def peak_gib(device: str) -> float | None:
    if device != "cuda":
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def reset_peak(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ------------------------------------------------------------------------------ (a) face stage
def write_random_face_weights(folder: Path) -> dict[str, Any]:
    """S3FD, 2DFAN4 and BiSeNet (19 classes) with random weights (seed 0) under the file names the
    backends look for. S3FD's classifier heads answer "background" everywhere: a random S3FD
    otherwise scores every one of a 720p frame's ~77k anchors near 0.5, above the library's 0.05
    candidate threshold, and decodes them one by one in Python, which a trained one never does."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN
    from facexlib.parsing.bisenet import BiSeNet

    from pipeline.weights import BISENET, FAN_2D, S3FD

    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "random-weights.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    torch.manual_seed(0)
    detector = s3fd().state_dict()
    for key, value in detector.items():
        if "mbox_conf" in key:
            value.zero_()
            if key.endswith(".bias"):   # the last channel is "face", the others background (a max-out for conv3_3)
                value[:-1], value[-1] = 10.0, -10.0
    torch.save(detector, folder / S3FD.name)
    torch.save(FAN(4).state_dict(), folder / FAN_2D.name)
    torch.save(BiSeNet(num_class=19).state_dict(), folder / BISENET.name)
    record = {"seed": 0, "files": [S3FD.name, FAN_2D.name, BISENET.name],
              "s3fd_classifier": "weights 0, bias +10 background / -10 face: no anchor is a candidate"}
    marker.write_text(json.dumps(record) + "\n")
    return record


def boxes_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """T×4 face boxes (x0, y0, x1, y1) around T×68×2 points, raised a little to take in the forehead,
    roughly the box S3FD puts around a face."""
    low, high = landmarks.min(axis=1), landmarks.max(axis=1)
    height = high[:, 1] - low[:, 1]
    return np.stack([low[:, 0], low[:, 1] - 0.2 * height, high[:, 0], high[:, 1]], axis=1).astype(np.float64)


def synthetic_face_frames(count: int, size: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A drawn face (skin ellipse, eyes, brows, mouth) moving over a textured background, and its boxes:
    the fallback where the sample generator cannot run (no dlib or scikit-image)."""
    import cv2

    width, height = size
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 4)
    frames, boxes = [], []
    for t in range(count):
        frame = background.copy()
        cx = width * (0.5 + 0.03 * np.sin(t / 6)); cy = height * (0.48 + 0.02 * np.cos(t / 7))  # noqa: E702
        ax, ay = 0.11 * width, 0.2 * height
        cv2.ellipse(frame, (int(cx), int(cy)), (int(ax), int(ay)), 0, 0, 360, (224, 172, 140), -1)
        for side in (-1, 1):
            eye = (int(cx + side * 0.4 * ax), int(cy - 0.2 * ay))
            cv2.ellipse(frame, eye, (int(0.15 * ax), int(0.06 * ay * (1 + 0.5 * np.sin(t / 3)))), 0, 0, 360,
                        (40, 30, 30), -1)
            cv2.line(frame, (eye[0] - int(0.2 * ax), eye[1] - int(0.18 * ay)),
                     (eye[0] + int(0.2 * ax), eye[1] - int(0.2 * ay)), (70, 50, 40), max(1, width // 200))
        cv2.ellipse(frame, (int(cx), int(cy + 0.5 * ay)), (int(0.35 * ax), int(0.08 * ay * (1.2 + np.sin(t / 4)))),
                    0, 0, 360, (150, 60, 60), -1)
        frames.append(frame)
        boxes.append([cx - ax, cy - ay, cx + ax, cy + ay])
    return np.stack(frames), np.asarray(boxes, np.float64)


def face_source() -> dict[str, Any]:
    """What draws the clips: the sample generator's animated portrait (its 68 points found by dlib,
    or read from data/sample's ground truth), else synthetic drawn faces."""
    try:
        need("skimage", "scipy")
        from pipeline.sample.face_animation import relaxed_rest_pose
        from pipeline.sample.generate import locate_face
        from skimage.data import astronaut
    except (MissingPackage, ImportError) as error:
        return {"kind": "synthetic drawn faces", "why": f"the sample generator cannot run: {error}"}
    photo = astronaut()
    try:
        need("dlib")
        neutral = locate_face(photo)
    except (MissingPackage, ImportError) as error:
        truth = ROOT / "data" / "sample" / "ground_truth.json"
        if not truth.is_file():
            return {"kind": "synthetic drawn faces", "why": f"no dlib to find the portrait's landmarks ({error}) "
                                                           f"and no {truth.relative_to(ROOT)}"}
        record = json.loads(truth.read_text())
        if record.get("faces") != ["skimage.data.astronaut"]:
            return {"kind": "synthetic drawn faces", "why": "no dlib, and data/sample was made from other faces"}
        neutral = np.asarray(record["photo_landmarks"][0], np.float64)
    return {"kind": "sample generator (skimage astronaut portrait animated by pipeline/sample)",
            "neutral": neutral.tolist(), "rest": relaxed_rest_pose(neutral, 0.8).tolist()}


def render_face_clip(job: dict) -> list[list[float]]:
    """Render one clip (job["rendered"] distinct frames, played back and forth to job["frames"]),
    encode it as H.264 the way the sample generator does, and return its true face boxes (T×4)."""
    import cv2

    from pipeline.sample.generate import encode_video

    cv2.setNumThreads(1)
    width, height = job["size"]
    source = job["source"]
    if "neutral" in source:
        from skimage.data import astronaut

        from pipeline.inputs.datasets import DATASETS
        from pipeline.sample.face_animation import FaceWarper
        from pipeline.sample.generate import ClipPlan, render_clip

        rng = np.random.default_rng(job["seed"])
        n = job["rendered"]
        classes = [c for c in DATASETS["sample"].classes]
        plan = ClipPlan(clip_id=job["clip_id"], label=classes[job["seed"] % len(classes)], partition="fold1", face=0,
                        codec="h264", storage="video", fps=job["fps"], num_frames=n, width=width, height=height,
                        flip=bool(job["seed"] % 2), intensity=0.9, onset=max(0, n // 5), apex=max(1, n * 3 // 5),
                        offset=None, release=0.5, blinks=[n // 2], brightness=0.0, contrast=1.0,
                        face_scale=round(float(rng.uniform(0.15, 0.2) * height), 2),
                        head=dict(roll_deg=round(float(rng.uniform(1, 6)), 2), shift=0.03, zoom=0.04, period_s=2.0,
                                  phase=round(float(rng.uniform(0, 6.28)), 3),
                                  centre=(round(float(rng.uniform(0.42, 0.58)), 3), 0.47)))
        warper = FaceWarper(astronaut(), np.asarray(source["neutral"], np.float64))
        frames, truth = render_clip(plan, np.asarray(source["rest"], np.float64), warper)
        boxes = boxes_from_landmarks(truth["landmarks"])
    else:
        frames, boxes = synthetic_face_frames(job["rendered"], (width, height), job["seed"])
    cycle = np.concatenate([np.arange(len(frames)), np.arange(len(frames) - 2, 0, -1)]) if len(frames) > 2 \
        else np.arange(len(frames))
    order = cycle[np.arange(job["frames"]) % len(cycle)]
    encode_video(frames[order], Path(job["path"]), "h264", job["fps"])
    return boxes[order].tolist()


def make_face_clips(folder: Path, settings: dict, workers: int) -> dict[str, Any]:
    """The clips (cached in `folder` by their parameters): manifest path, true boxes per clip id, source."""
    from pipeline.inputs.manifest import write_manifest

    params = {"version": 1, **{k: settings[k] for k in ("size", "clips", "frames", "rendered", "fps")}}
    params["size"] = list(params["size"])
    made = folder / "made.json"
    if made.is_file() and json.loads(made.read_text())["params"] == params:
        return {**json.loads(made.read_text()), "cached": True}
    started = time.perf_counter()
    source = face_source()
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    count = settings["clips"] + bool(settings["warmup"])   # the first one warms up
    jobs = [{"clip_id": f"hd{i:03d}", "path": str(folder / "videos" / f"hd{i:03d}.mp4"), "seed": i,
             "size": settings["size"], "frames": settings["frames"], "rendered": settings["rendered"],
             "fps": settings["fps"], "source": source} for i in range(count)]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            boxes = list(pool.map(render_face_clip, jobs))
    else:
        boxes = [render_face_clip(job) for job in jobs]
    write_manifest(folder / "manifest.csv", [dict(clip_id=j["clip_id"], path=f"videos/{j['clip_id']}.mp4",
                                                  label="neutral", partition="fold1", frames=settings["frames"])
                                             for j in jobs], dataset="sample",
                   comment="bench/gpu_check.py: generated 720p clips")
    record = {"params": params, "manifest": str(folder / "manifest.csv"),
              "boxes": {j["clip_id"]: b for j, b in zip(jobs, boxes)},
              "source": {k: v for k, v in source.items() if k in ("kind", "why")},
              "generation_s": round(time.perf_counter() - started, 1)}
    made.write_text(json.dumps(record) + "\n")
    return {**record, "cached": False}


class PlantedDetector:
    """The stage's own S3FD backend, run on every frame it is given (network and post-processing at
    full cost); where it finds no face (always, with random weights) the clip's true box is reported."""

    def __init__(self, inner, detect_every: int):
        self.inner, self.name, self.detect_every = inner, inner.name, detect_every
        self.boxes: np.ndarray | None = None
        self.counts: Counter = Counter()

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    def __getattr__(self, name: str):
        """Everything else is the stage's own detector: the frame-by-frame re-check (`confirm`, its
        threshold) runs at full cost; with random weights it confirms nothing, so the check keeps its
        clips with `min_face_share=0`."""
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def detect(self, frames):
        found = self.inner.detect(frames)
        n = len(self.boxes)
        probe = list(range(0, n, self.detect_every))
        if probe[-1] != n - 1:
            probe.append(n - 1)
        if len(probe) != len(frames):   # the clip was decoded to another length: spread over it
            probe = np.linspace(0, n - 1, len(frames)).round().astype(int).tolist()
        self.counts.update(searched=len(frames), found_by_network=sum(bool(f) for f in found))
        return [faces or [(np.asarray(self.boxes[t], np.float64), 0.99)] for faces, t in zip(found, probe)]


def face_stage(config, boxes: dict[str, list]):
    """A FaceStage whose detector is wrapped by PlantedDetector, told each clip's true boxes."""
    from pipeline.run.stages import FaceStage

    class PlantedFaceStage(FaceStage):
        def setup(self) -> None:
            super().setup()
            self.detector = PlantedDetector(self.detector, self.config.detect_every)

        def make_sample(self, row: dict):
            self.detector.boxes = np.asarray(boxes[row["clip_id"]], np.float64)
            return super().make_sample(row)

    return PlantedFaceStage(config)


def run_face_jobs(stage, rows: list[dict], tag: str, deadline: float) -> dict[str, Any]:
    """`FaceStage.process` on one single-clip shard job per row until `deadline`; summed step times."""
    from pipeline.run.stages import ShardJob

    seconds: Counter = Counter()
    statuses: Counter = Counter()
    reasons: list[str] = []
    clips = 0
    began = time.perf_counter()
    for i, row in enumerate(rows):
        if time.perf_counter() > deadline and clips:
            break
        job = stage.process(ShardJob(name=f"{tag}-{i:06d}", partition=row["partition"], rows=[row]))
        for status in job.status.values():
            statuses[status["status"]] += 1
            if status["status"] != "ok":
                reasons.append(f"{status['reason']}: {status['message'][:300]}")
        seconds.update({k: v for k, v in job.seconds.items() if isinstance(v, (int, float))})
        clips += 1
        Path(job.work_tar).unlink(missing_ok=True)
    return {"wall_s": time.perf_counter() - began, "clips": clips, "seconds": dict(seconds),
            "statuses": dict(statuses), "failures": reasons[:3]}


def face_config(clips: dict, work: Path, weights: Path, detect_every: int):
    from pipeline.backends import PROFILES
    from pipeline.run.stages import FaceConfig

    full = PROFILES["full"]
    (work / "tars").mkdir(parents=True, exist_ok=True)
    return FaceConfig(dataset="sample", manifest=clips["manifest"], data_root=str(Path(clips["manifest"]).parent),
                      work_dir=str(work / "tars"), detector=full.detector, landmarker=full.landmarker,
                      parser=full.parser, crop="detect", weights_dir=str(weights), detect_every=detect_every,
                      gpus_per_worker=1.0,
                      # random S3FD weights confirm no frame of a planted face (the re-check still runs and is
                      # timed); 0 keeps the clips, as tests/test_full_stack.py does
                      min_face_share=0.0)


def significant(value: float, digits: int = 4) -> float:
    """`value` to `digits` significant digits (a dry run's 0.04 frames/s must not print as 0.0)."""
    return float(f"{value:.{digits}g}")


def face_figures(result: dict, workers: int) -> dict[str, Any]:
    """frames/s end to end and of the models alone, ms per stored frame per step, from summed step times."""
    s = result["seconds"]
    frames = int(s.get("count.frames_kept", 0))
    models = sum(s.get(f"face.{k}", 0.0) for k in ("detect", "landmarks", "masks"))
    steps = ("decode", "detect", "track", "crop", "landmarks", "masks", "encode", "write")
    return {
        "workers": workers, "clips": result["clips"], "frames": frames,
        "frames_searched_by_detector": int(s.get("count.frames_searched", 0)),
        "wall_s": round(result["wall_s"], 3),
        "frames_per_s": significant(frames / result["wall_s"]) if result["wall_s"] else None,
        "models_frames_per_s": significant(frames * workers / models) if models else None,
        "ms_per_frame": {k: round(1000 * s.get(f"face.{k}", 0.0) / frames, 3) for k in steps} if frames else {},
        "statuses": result["statuses"], "failures": result["failures"],
    }


def _face_worker(config, boxes: dict, warm_row: dict | None, rows: list[dict], seconds: float, barrier, results) -> None:
    """One worker process of the multi-worker variant: load the models, warm up, wait for the
    others, then run its share of the clips for at most `seconds`; its figures go to `results`."""
    try:
        import cv2
        import torch

        cv2.setNumThreads(1)   # one CPU per worker, as Ray gives a face actor
        torch.set_num_threads(1)
        stage = face_stage(config, boxes)
        began = time.perf_counter()
        stage.setup()
        if warm_row is not None:
            run_face_jobs(stage, [warm_row], f"warm{os.getpid()}", deadline=0.0)
        setup_s = time.perf_counter() - began
        barrier.wait(timeout=600)
        start = time.time()
        result = run_face_jobs(stage, rows, f"w{os.getpid()}", deadline=time.perf_counter() + seconds)
        results.put({**result, "start": start, "end": time.time(), "setup_s": setup_s,
                     "detector": dict(stage.detector.counts)})
    except BaseException as error:  # noqa: BLE001 — reported by the parent
        barrier.abort()
        results.put({"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(limit=6)})


def run_face_workers(config, boxes: dict, warm_row: dict | None, rows: list[dict], workers: int,
                     seconds: float) -> list[dict]:
    """`workers` processes (spawned, as Ray's actors are separate processes), each with its own
    models on the GPU, started together on interleaved shares of `rows`."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(workers), context.Queue()
    processes = [context.Process(target=_face_worker, daemon=True,
                                 args=(config, boxes, warm_row, rows[i::workers], seconds, barrier, results))
                 for i in range(workers)]
    for process in processes:
        process.start()
    outs: list[dict] = []
    while len(outs) < workers:
        try:
            outs.append(results.get(timeout=5))
        except queue.Empty:
            if not any(process.is_alive() for process in processes) and results.empty():
                codes = [process.exitcode for process in processes]
                raise RuntimeError(f"face worker processes ended without a result (exit codes {codes})") from None
    for process in processes:
        process.join(timeout=60)
    errors = [o for o in outs if "error" in o]
    if errors:
        raise RuntimeError(f"a face worker failed: {errors[0]['error']}\n{errors[0]['traceback']}")
    return outs


def face_variant(name: str, every: int, workers: int, clips: dict, work: Path, weights: Path, warm: dict | None,
                 timed: list[dict], share: float, device: str) -> dict[str, Any]:
    """One variant of the face stage: models loaded and warmed up on one clip, then timed on the rest."""
    config = face_config(clips, work, weights, every)
    reset_peak(device)
    deadline = time.perf_counter() + max(share, 1.0)
    if workers == 1:
        stage = face_stage(config, clips["boxes"])
        began = time.perf_counter()
        stage.setup()
        if warm is not None:   # cuDNN's autotuning for each input shape, numba's compilation, first calls
            run_face_jobs(stage, [warm], "warm", deadline=0.0)
        setup_s = time.perf_counter() - began
        result = run_face_jobs(stage, timed, "timed", deadline)
        figures = face_figures(result, 1)
        figures.update(setup_and_warmup_s=round(setup_s, 2), detector=dict(stage.detector.counts),
                       peak_gpu_memory_gib=peak_gib(device))
        del stage
    else:
        # Each worker process loads its own models onto the GPU, warms up, and all start together.
        outs = run_face_workers(config, clips["boxes"], warm, timed, workers, max(1.0, share))
        seconds: Counter = Counter()
        detector: Counter = Counter()
        for out in outs:
            seconds.update(out["seconds"])
            detector.update(out["detector"])
        wall = max(o["end"] for o in outs) - min(o["start"] for o in outs)
        result = {"wall_s": wall, "clips": sum(o["clips"] for o in outs), "seconds": dict(seconds),
                  "statuses": dict(sum((Counter(o["statuses"]) for o in outs), Counter())),
                  "failures": [f for o in outs for f in o["failures"]][:3]}
        figures = face_figures(result, workers)
        figures.update(setup_and_warmup_s=round(max(o["setup_s"] for o in outs), 2),
                       detector={"searched": detector["searched"], "found_by_network": detector["found_by_network"]},
                       peak_gpu_memory_gib="per process, not measured here")
    figures = {"variant": name, "detect_every": every, **figures}
    log(f"face: {name}: {figures['frames']} frames, {figures['frames_per_s']} frames/s end to end, "
        f"models alone {figures['models_frames_per_s']} frames/s")
    return figures


def face_part(ctx: dict) -> dict[str, Any]:
    need("torch", "face_alignment", "facexlib", "av", "cv2")
    import cv2
    import torch

    from pipeline.inputs.manifest import load_manifest
    from pipeline.run.stages import FaceConfig

    settings, device, work = ctx["settings"]["face"], ctx["device"], ctx["work"] / "face"
    part_deadline = time.perf_counter() + ctx["budget_s"] * BUDGET_SHARE["face"]
    cpus = os.cpu_count() or 1
    weights = work / "weights"
    weights_record = write_random_face_weights(weights)
    log(f"face: generating {settings['clips'] + bool(settings['warmup'])} clips of {settings['frames']} frames at "
        f"{settings['size'][0]}x{settings['size'][1]}")
    clips = make_face_clips(work / f"clips-{settings['size'][0]}x{settings['size'][1]}", settings,
                            workers=1 if ctx["dry_run"] else min(cpus, settings["clips"] + 1))
    log(f"face: clips ready ({clips['source']['kind']}, {clips['generation_s']} s"
        f"{', cached' if clips['cached'] else ''})")
    rows = [dataclasses.asdict(r) for r in load_manifest(clips["manifest"], Path(clips["manifest"]).parent).rows]
    warm, timed = (rows[0], rows[1:]) if settings["warmup"] else (None, rows)
    every = FaceConfig.detect_every
    variants = [(f"1 worker, detector on every {every}th frame (the pipeline's setting)", every, 1),
                ("1 worker, detector on every frame", 1, 1),
                (f"{settings['workers']} workers sharing the GPU, detector on every {every}th frame", every,
                 settings["workers"])]
    if not settings["every_frame_variant"]:   # the dry run: the same code path as the first
        variants.pop(1)
    share = (part_deadline - time.perf_counter()) / len(variants)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)   # as in a Ray face actor: one CPU each
    try:
        results = [face_variant(name, every, workers, clips, work, weights, warm, timed, share, device)
                   for name, every, workers in variants]
    finally:
        cv2.setNumThreads(threads)
    best = max((r["frames_per_s"] or 0) for r in results)
    return {
        "what": "FaceStage.process (decode, S3FD, track, crop, FAN, BiSeNet, encode, write) on generated clips",
        "device": device, "ray": "not used: FaceStage.setup and FaceStage.process called directly",
        "clips": {k: clips[k] for k in ("params", "source", "generation_s", "cached")},
        "backends": {"detector": "S3FD (face_alignment SFDDetector, batch 8, frames up to 1280 px)",
                     "landmarker": "FAN 2DFAN4 (face_alignment, batch 32)",
                     "parser": "BiSeNet (facexlib, 19 classes, 512 px, batch 16)",
                     "weights": weights_record,
                     "detector_boxes": "the generator's true face box per searched frame (random S3FD finds none)"},
        "variants": results,
        "frames_per_s_best": best,
        "anchors": FACE_ANCHORS,
        "notes": "frames_per_s: stored frames per wall second, whole stage (one process per worker, "
                 "one CPU thread each for OpenCV); models_frames_per_s: frames per second of the three "
                 "models' own calls (detect + landmarks + masks) summed over workers. torch "
                 f"{torch.__version__}.",
    }


# ------------------------------------------------------------------------------ (b) describers
def videollava_config(tiny: bool):
    """Video-LLaVA-7B-hf's configuration (its published config.json's sizes), or a tiny one of the
    same classes. Token ids as in the checkpoint: <image> 32000, <video> 32001 (vocab 32064)."""
    from transformers import CLIPVisionConfig, LlamaConfig, VideoLlavaConfig

    regular = 250 if tiny else 32000
    ids = {"image_token_index": regular, "video_token_index": regular + 1}
    if tiny:
        text = LlamaConfig(vocab_size=regular + 64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                           bos_token_id=1, eos_token_id=2, pad_token_id=0)
        vision = CLIPVisionConfig(image_size=32, patch_size=16, hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=4, projection_dim=32)
        seq = {"image_seq_length": 4, "video_seq_length": 8 * 5}   # 8 frames of 4 patches + class token
    else:
        text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, hidden_act="silu",
                           max_position_embeddings=4096, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
                           pad_token_id=0, tie_word_embeddings=False)
        vision = CLIPVisionConfig(image_size=224, patch_size=14, hidden_size=1024, intermediate_size=4096,
                                  num_hidden_layers=24, num_attention_heads=16, projection_dim=768,
                                  hidden_act="quick_gelu", layer_norm_eps=1e-5)
        seq = {"image_seq_length": 256, "video_seq_length": 2056}
    return VideoLlavaConfig(vision_config=vision, text_config=text, projector_hidden_act="gelu",
                            vision_feature_select_strategy="default", vision_feature_layer=-2, **ids, **seq), regular


# Qwen2.5-VL's published configurations: config.json of Qwen/Qwen2.5-VL-7B-Instruct and of
# Qwen/Qwen2.5-VL-3B-Instruct on the Hugging Face Hub (the values below are theirs). Both: vision
# tower of 32 blocks (hidden 1280, MLP 3420, 16 heads, SiLU), 14-px patches, 2 × 2 merge, 2-frame
# temporal patches, 112-px attention windows with full attention in blocks 7, 15, 23, 31, 2 tokens a
# second; language model with SiLU, RMSNorm eps 1e-6, RoPE theta 1e6, M-RoPE sections 16/24/24,
# 128000 positions; special tokens <|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645,
# <|vision_start|> 151652, <|vision_end|> 151653, <|image_pad|> 151655, <|video_pad|> 151656.
QWEN25VL_SIZES = {
    "7b": {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
           "num_attention_heads": 28, "num_key_value_heads": 4, "tie_word_embeddings": False},
    "3b": {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
           "num_attention_heads": 16, "num_key_value_heads": 2, "tie_word_embeddings": True},
}
QWEN25VL_SPECIAL = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
                    "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|vision_pad|>": 151654,
                    "<|image_pad|>": 151655, "<|video_pad|>": 151656}


def qwen25vl_config(size: str):
    """Qwen2.5-VL-7B- or 3B-Instruct's configuration (QWEN25VL_SIZES and the shared values above)."""
    from transformers import Qwen2_5_VLConfig

    sizes = dict(QWEN25VL_SIZES[size])
    tied = sizes.pop("tie_word_embeddings")
    text = dict(**sizes, hidden_act="silu", max_position_embeddings=128000, rms_norm_eps=1e-6, rope_theta=1e6,
                rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}, bos_token_id=151643,
                eos_token_id=151645, tie_word_embeddings=tied)
    vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, hidden_act="silu",
                  out_hidden_size=sizes["hidden_size"], patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                  window_size=112, fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2)
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=tied,
                            image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                            vision_end_token_id=151653)


def word_level(instruction: str, regular: int, specials: dict[str, int], unk: str):
    """A word-level tokenizer, built offline (no tokenizer files can be downloaded): `specials` at their
    checkpoint's ids, the instruction's words and punctuation as single tokens (close to a real tokenizer's
    ~1.3 tokens per word), filler words up to `regular` ids and placeholders between the special ids, so the
    prompt has about the real prompt's length and the model finds its special tokens where the real one does."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {unk: 0, **specials}
    used = set(vocab.values())
    words = re.findall(r"\w+|[^\w\s]", instruction + " USER: ASSISTANT: system user assistant You are a helpful")
    fillers = (f"w{n}" for n in range(regular))
    free = 0
    for word in [w for w in sorted(set(words)) if w not in vocab] + [None] * regular:
        while free in used:
            free += 1
        if free >= regular:
            break
        vocab[word if word is not None else next(fillers)] = free
        used.add(free)
    for index in range(regular, max(used)):   # the checkpoint's other special ids, unused here
        if index not in used:
            vocab[f"<|reserved_{index}|>"] = index
    core = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return core


def videollava_tokenizer(instruction: str, regular: int):
    """Video-LLaVA's: <unk> 0, <s> 1, </s> 2, words, then <image>, <video>, <pad> at `regular`, +1, +2."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    core = word_level(instruction, regular, {"<s>": 1, "</s>": 2, "<image>": regular, "<video>": regular + 1,
                                             "<pad>": regular + 2}, "<unk>")
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", pad_token="<pad>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>", "<video>"]})
    assert tokenizer.convert_tokens_to_ids("<video>") == regular + 1
    return tokenizer


def qwen25vl_tokenizer(instruction: str):
    """Qwen2.5-VL's special tokens at the checkpoint's ids, 151643 word-level ids below them."""
    from transformers import PreTrainedTokenizerFast

    core = word_level(instruction, 151643, QWEN25VL_SPECIAL, "<unk>")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN25VL_SPECIAL)})
    assert tokenizer.convert_tokens_to_ids("<|video_pad|>") == 151656
    return tokenizer


def videollava_processor(tokenizer, crop: int, patch: int):
    from transformers import VideoLlavaImageProcessor, VideoLlavaProcessor, VideoLlavaVideoProcessor

    size, crop_size = {"shortest_edge": crop}, {"height": crop, "width": crop}
    return VideoLlavaProcessor(image_processor=VideoLlavaImageProcessor(size=size, crop_size=crop_size),
                               video_processor=VideoLlavaVideoProcessor(size=size, crop_size=crop_size),
                               tokenizer=tokenizer, patch_size=patch, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1)


def tiny_qwen25vl_tools():
    """tools/tiny_qwen25vl.py (the tiny model users try the describer with, and the ChatML template)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_qwen25vl", ROOT / "tools" / "tiny_qwen25vl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clip_samples(count: int, frames: int, crop: int = 224) -> list:
    """Face-crop samples as the face stage writes them (T×224×224 RGB), a patch moving across them."""
    from pipeline.shards.format import make_sample

    samples = []
    for index in range(count):
        rng = np.random.default_rng(index)
        video = np.repeat(rng.integers(0, 256, (1, crop, crop, 3), dtype=np.uint8), frames, axis=0)
        for t in range(frames):
            x = (7 * t) % (crop // 2)
            video[t, crop // 3:crop // 2, x:x + crop // 6] = 255
        meta = {"dataset": "gpu_check", "clip_id": f"clip{index}", "label": "neutral", "partition": "fold1",
                "source": {"fps": 25.0, "frames": frames}}
        samples.append(make_sample(f"clip{index}", meta, video, np.arange(frames) / 25.0,
                                   np.tile([0, 0, crop, crop], (frames, 1)), np.ones(frames, bool),
                                   np.zeros((frames, 68, 2), np.float32), np.ones(frames, np.float32)))
    return samples


def build_describer_model(backend: str, size: str, device: str, dtype, instruction: str):
    """(model built on `device` in `dtype` with random weights, its processor, describer keyword arguments,
    a description of the model) for one case of the describe part."""
    import torch

    tiny = size == "tiny"
    if backend == "videollava":
        from transformers import VideoLlavaForConditionalGeneration as model_class

        config, regular = videollava_config(tiny)
        processor = videollava_processor(videollava_tokenizer(instruction, regular), 32 if tiny else 224,
                                         config.vision_config.patch_size)
        kwargs = {}   # the describer's own: 8 frames
        what = ("tiny random Video-LLaVA (dry run)" if tiny else
                "Video-LLaVA-7B-hf's configuration, random weights (Llama-2-7B: hidden 4096, 32 layers, 32 heads, "
                "intermediate 11008, vocab 32064; CLIP ViT-L/14 224 video and image towers; projector)")
    else:
        from transformers import Qwen2_5_VLForConditionalGeneration as model_class

        tools = tiny_qwen25vl_tools()
        if tiny:
            tokenizer = tools.byte_tokenizer()
            config = tools.tiny_config(tokenizer)
            processor = tools.processor_for(tokenizer)
        else:
            from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

            config = qwen25vl_config(size)
            processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(),
                                            video_processor=Qwen2VLVideoProcessor(),
                                            tokenizer=qwen25vl_tokenizer(instruction),
                                            chat_template=tools.CHAT_TEMPLATE)
        kwargs = {"num_frames": 4, "frame_size": 56} if tiny else {}   # the describer's own: 16 frames of 336 px
        text = config.text_config
        what = ("tiny random Qwen2.5-VL (dry run)" if tiny else
                f"Qwen2.5-VL-{size.upper()}-Instruct's configuration, random weights (hidden {text.hidden_size}, "
                f"{text.num_hidden_layers} layers, {text.num_attention_heads} heads / {text.num_key_value_heads} "
                f"KV heads, intermediate {text.intermediate_size}, vocab {text.vocab_size}; 32-block vision tower)")
    torch.manual_seed(0)
    with torch.device(device):   # every parameter is created (and initialised) on the device, in `dtype`
        model = model_class._from_config(config, dtype=dtype)
    return model.eval(), processor, kwargs, what


def describe_case(backend: str, size: str, ctx: dict, deadline: float, instruction: str) -> dict[str, Any]:
    """One describer at one size: clips/s, prefill, peak memory per batch size, GPU-hours per dataset."""
    import torch

    from pipeline.backends import make_describer
    from pipeline.describers.video_llm import greedy_new_tokens, uniform_frame_indices

    settings, device = ctx["settings"]["describe"], ctx["device"]
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    reset_peak(device)
    began = time.perf_counter()
    model, processor, kwargs, what = build_describer_model(backend, size, device, dtype, instruction)
    synchronize(device)
    build_s = time.perf_counter() - began
    placed = sorted({f"{p.device.type} {str(p.dtype).removeprefix('torch.')}" for p in model.parameters()})
    parameters = sum(p.numel() for p in model.parameters())
    log(f"describe: {backend} {size}: {parameters / 1e9:.2f} B parameters built in {build_s:.1f} s "
        f"({', '.join(placed)})")
    # Exactly NEW_TOKENS new tokens: the describer sets max_new_tokens; the model's generation
    # config adds the minimum, so a random end-of-sequence token cannot stop a clip early.
    model.generation_config.min_new_tokens = NEW_TOKENS
    samples = clip_samples(settings["clips"], settings["clip_frames"], 224)
    runs, generation = [], None
    for batch_size in settings["batch_sizes"]:
        if runs and time.perf_counter() > deadline:
            runs.append({"batch_size": batch_size, "skipped": "the part's time budget was spent"})
            continue
        describer = make_describer(backend, model=model, processor=processor, max_new_tokens=NEW_TOKENS,
                                   batch_size=batch_size, **kwargs)
        generation = describer.generation_record()
        batch = (samples * batch_size)[:batch_size]
        reset_peak(device)
        try:
            if settings["warmup"]:
                describer.describe(batch)
                synchronize(device)
            # The prompt and video alone (one new token): how much of a batch is the prefill.
            indices = [uniform_frame_indices(s.num_frames, describer.num_frames) for s in batch]
            inputs, extras = describer.batch_inputs(batch, indices)
            began = time.perf_counter()
            model.generation_config.min_new_tokens = 1
            greedy_new_tokens(model, inputs, 1, processor.tokenizer.pad_token_id)
            model.generation_config.min_new_tokens = NEW_TOKENS
            synchronize(device)
            prefill_s = time.perf_counter() - began
            times, lengths = [], []
            for _ in range(settings["batches"]):
                if times and time.perf_counter() > deadline:
                    break
                began = time.perf_counter()
                out = describer.describe(batch)
                synchronize(device)
                times.append(time.perf_counter() - began)
                lengths += [d.record["generated_tokens"] for d in out]
        except torch.OutOfMemoryError:
            model.generation_config.min_new_tokens = NEW_TOKENS
            runs.append({"batch_size": batch_size, "out_of_memory": True, "peak_gpu_memory_gib": peak_gib(device)})
            log(f"describe: {backend} {size}: out of memory at batch {batch_size}")
            reset_peak(device)
            continue
        batch_s = float(np.median(times))
        clips_per_s = batch_size / batch_s
        run = {"batch_size": batch_size, "batches_timed": len(times), "batch_s": round(batch_s, 3),
               "clips_per_s": round(clips_per_s, 3), "prefill_s": round(prefill_s, 3),
               "decode_ms_per_token": round(1000 * max(batch_s - prefill_s, 0.0) / (NEW_TOKENS - 1), 2),
               "input_tokens": int(inputs["input_ids"].shape[1]),
               "video_tokens_per_clip": int((inputs["input_ids"][0] == processor.video_token_id).sum()),
               "new_tokens": sorted(set(lengths)),
               "gpu_hours": {name: round(clips / clips_per_s / 3600, 3) for name, clips in DATASET_CLIPS.items()},
               "peak_gpu_memory_gib": peak_gib(device)}
        runs.append(run)
        log(f"describe: {backend} {size} batch {batch_size}: {run['batch_s']} s per batch, {run['clips_per_s']} "
            f"clips/s, MAFW {run['gpu_hours']['MAFW']} GPU-hours, peak {run['peak_gpu_memory_gib']} GiB")
    attention = getattr(model.config, "_attn_implementation", None)
    del model
    reset_peak(device)
    measured = [r for r in runs if "clips_per_s" in r]
    best = max(measured, key=lambda r: r["clips_per_s"], default=None)
    return {"backend": backend, "size": size, "model": what, "parameters": parameters,
            "dtype": str(dtype).removeprefix("torch."), "placement": placed, "build_s": round(build_s, 2),
            "attention": attention, "generation": generation, "runs": runs,
            "best": None if best is None else {"batch_size": best["batch_size"], "clips_per_s": best["clips_per_s"],
                                              "gpu_hours": best["gpu_hours"]}}


def vllm_note() -> dict[str, Any]:
    """vLLM serves Qwen2.5-VL (not Video-LLaVA); this check does not drive it, and says whether it is here."""
    import importlib.util

    installed = importlib.util.find_spec("vllm") is not None
    return {"measured": False,
            "why": ("vLLM is installed here but this check does not drive it yet" if installed else
                    "vLLM is not installed in this environment, so it could not be tried")}


def describe_part(ctx: dict) -> dict[str, Any]:
    need("torch", "transformers", "tokenizers")
    from pipeline.describers.video_llm import read_instruction
    from pipeline.resources import PROMPTS_DIR

    settings = ctx["settings"]["describe"]
    started = time.perf_counter()
    budget = ctx["budget_s"] * BUDGET_SHARE["describe"]
    instruction, _ = read_instruction(PROMPTS_DIR / "videollava_instruction.txt")
    cases = []
    for number, (backend, size) in enumerate(settings["cases"]):
        # each case may use its share of what is left of the part's budget
        left = budget - (time.perf_counter() - started)
        deadline = time.perf_counter() + max(left, 0.0) / (len(settings["cases"]) - number)
        try:
            cases.append(describe_case(backend, size, ctx, deadline, instruction))
        except Exception as error:  # noqa: BLE001 — one failing case must not stop the others
            cases.append({"backend": backend, "size": size, "error": f"{type(error).__name__}: {error}",
                          "traceback": traceback.format_exc(limit=8)})
            log(f"describe: {backend} {size}: error: {type(error).__name__}: {error}")
    result = {
        "what": f"the pipeline's describer (describe(): frames, processor, prompt, greedy generation, decoding, "
                f"emotion filter) on 224-px face-crop clips, exactly {NEW_TOKENS} new tokens per clip, each "
                "backend with its own frame count and size; random weights built on the device",
        "new_tokens": NEW_TOKENS, "dataset_clips": DATASET_CLIPS, "cases": cases, "vllm": vllm_note(),
        "pipeline_batch_size_default": {"videollava": 4, "qwen2.5-vl": 8},
    }
    failed = [f"{c['backend']} {c['size']}" for c in cases if "error" in c]
    if failed:
        result["error"] = f"case(s) failed: {', '.join(failed)}"
    write_json(ctx["out_dir"] / "gpu_describe.json",
               {"benchmark": "gpu_describe", "mode": ctx["mode"], "environment": ctx["environment"], **result})
    return result


# ------------------------------------------------------------------------------ (c) training
def training_part(ctx: dict) -> dict[str, Any]:
    need("torch", "clip")
    import torch

    from pipeline.inputs.datasets import DATASETS
    from trainer.config import resolve
    from trainer.data import to_model_inputs
    from trainer.train import make_optimizer, optimizer_step
    from trainer_step import synthetic_batch

    settings, device = ctx["settings"]["training"], ctx["device"]
    deadline = time.perf_counter() + ctx["budget_s"] * BUDGET_SHARE["training"]
    classes = list(DATASETS["mafw"].classes)
    runs = []
    for name, recipe in settings["cases"]:
        # the step's cost does not depend on the class descriptions' words: ours, so that no fetched file is needed
        overrides: dict[str, Any] = {"recipe": recipe, "class_descriptions": "ours"}
        if settings["batch_size"]:
            overrides["batch_size"] = settings["batch_size"]
        config = resolve(name, "mafw", overrides)
        run: dict[str, Any] = {"model": name, "recipe": recipe, "batch_size": config.batch_size,
                               "frames": config.num_frames, "optimizer": config.optimizer,
                               "precision": config.precision if device == "cuda" else "fp32 (CPU)",
                               "normalise": config.normalise, "grad_clip": config.grad_clip}
        model = optimizer = batch = None
        try:
            reset_peak(device)
            torch.manual_seed(0)
            model = config.build_model(classes, pretrained=False).to(device)
            optimizer = make_optimizer(model, config)
            autocast = config.autocast(torch.device(device))
            batch = synthetic_batch(model, config.batch_size, config.num_frames, model.input_resolution,
                                    torch.device(device))
            model.train()
            times = []
            for step in range(settings["warmup"] + settings["steps"]):
                if step >= settings["warmup"] + 1 and time.perf_counter() > deadline:
                    break
                synchronize(device)
                began = time.perf_counter()
                inputs = to_model_inputs(batch, device, normalise=config.normalise)
                with autocast():
                    loss = model(inputs)["loss"]
                optimizer_step(loss, optimizer, config.grad_clip)
                synchronize(device)
                if step >= settings["warmup"]:
                    times.append(time.perf_counter() - began)
            step_s = float(np.median(times))
            run.update(steps_timed=len(times), step_s=round(step_s, 4), clips_per_s=round(config.batch_size / step_s, 2),
                       peak_gpu_memory_gib=peak_gib(device), image_size=int(model.input_resolution),
                       trainable_parameters=int(model.count_trainable()), loss=round(float(loss.item()), 4))
            log(f"training: {name} ({recipe}, {run['precision']}, batch {config.batch_size}): "
                f"{run['step_s']} s/step, peak {run['peak_gpu_memory_gib']} GiB")
        except torch.OutOfMemoryError:
            run.update(out_of_memory=True, peak_gpu_memory_gib=peak_gib(device))
            log(f"training: {name}: out of memory at batch {config.batch_size}")
        finally:
            del model, optimizer, batch
            reset_peak(device)
        runs.append(run)
    return {"what": "the trainer's step (to_model_inputs, forward, backward, clipping, optimiser) on synthetic "
                    "uint8 batches (bench/trainer_step.py) of the recipe's clips (its batch size and frame count), "
                    "random CLIP weights, MAFW's 11 classes; median step after warm-up",
            "runs": runs}


# ------------------------------------------------------------------------------ main
def run_part(part: str, ctx: dict) -> dict[str, Any]:
    began = time.perf_counter()
    log(f"--- part {part}")
    try:
        result = {"face": face_part, "describe": describe_part, "training": training_part}[part](ctx)
    except MissingPackage as error:
        result = {"skipped": str(error)}
        log(f"{part}: skipped: {error}")
    except Exception as error:  # noqa: BLE001 — one failing part must not stop the others
        result = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(limit=8)}
        log(f"{part}: error: {type(error).__name__}: {error}")
    result["part_s"] = round(time.perf_counter() - began, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="every part on the CPU with tiny inputs (CI)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for gpu_check.json (default bench/results; required with --dry-run)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds the parts' timed loops may take in all (default 420; dry run 30)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="generated clips and weights (default /tmp/dfer-gpu-check; dry run: a temporary folder)")
    args = parser.parse_args(argv)
    if args.dry_run:
        if args.out is None:
            parser.error("--dry-run needs --out DIR (its figures are not results)")
        os.environ["CUDA_VISIBLE_DEVICES"] = ""   # the CPU, even on a GPU machine
        # face_alignment's heatmap decoder is numba-compiled on first use in every process (~12 s on
        # 2 cores); on a dry run's few frames plain Python is faster. Worker processes inherit it.
        os.environ["NUMBA_DISABLE_JIT"] = "1"
    out = (args.out or RESULTS) / "gpu_check.json"

    import torch

    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    if device == "cpu" and not args.dry_run:
        print("No GPU here (torch.cuda.is_available() is False). This check is for a GPU machine; "
              "`--dry-run --out DIR` runs its code paths on the CPU.", file=sys.stderr)
        return 2
    temporary = tempfile.TemporaryDirectory(prefix="gpu-check-") if args.dry_run and args.work_dir is None else None
    work = Path(temporary.name) if temporary else (args.work_dir or Path(os.environ.get(
        "BENCH_WORK_DIR", "/tmp/dfer-bench")) / "gpu-check")
    work.mkdir(parents=True, exist_ok=True)
    mode = "dry-run (CPU, tiny inputs)" if args.dry_run else "gpu"
    ctx = {"device": device, "dry_run": args.dry_run, "work": work, "mode": mode, "out_dir": out.parent,
           "settings": SETTINGS["dry" if args.dry_run else "gpu"], "environment": environment(device),
           "budget_s": args.budget_s if args.budget_s is not None else (30.0 if args.dry_run else 420.0)}
    started = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "gpu_check", "mode": mode,
                              "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                              "environment": ctx["environment"], "parts": {}}
    log(f"gpu_check on {report['environment'].get('gpu') or device}: parts {', '.join(args.parts)} -> {out}")
    try:
        for part in args.parts:
            report["parts"][part] = run_part(part, ctx)
            report["total_s"] = round(time.perf_counter() - started, 1)
            write_json(out, report)
    finally:
        if temporary:
            temporary.cleanup()
    failed = [p for p, r in report["parts"].items() if "error" in r]
    skipped = [p for p, r in report["parts"].items() if "skipped" in r]
    log(f"done in {report['total_s']} s: {out}" + (f"; skipped {', '.join(skipped)}" if skipped else "")
        + (f"; FAILED {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
