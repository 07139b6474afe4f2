"""Generate the sample dataset: short videos of a real face making expressions, with ground truth.

    python -m pipeline.sample generate [--out data/sample] [--seed 0] [--clips-per-class 10] [--face img.jpg ...]
    python -m pipeline.sample sheet [--data data/sample] [--out data/sample/contact_sheet.png]

The face is a real photograph (`skimage.data.astronaut()`, public domain, or your own
`--face` images). dlib finds its 68 landmarks; each clip then moves them by action units
(pipeline/sample/face_animation.py) along neutral → onset → apex (→ offset) and warps the photo to
match, under small head motion, with the clip's own frame rate, length, size, lighting,
mirroring and codec — all drawn from the seed, so the same seed gives the same files.
Hard cases are added on purpose: a truncated video, a zero-byte file, a clip with no face,
and clips stored as folders of JPEG frames. Layout of the output folder (docs/sample-dataset.md):

    manifest.csv           the project's manifest format, `# dataset: sample`
    ground_truth.json      per clip: class, expression parameters, video facts, expected failure
    truth/<clip_id>.npz    per clip: landmarks (T×68×2, source-frame pixels), intensity, blink, timestamps
    videos/<clip_id>.mp4|.avi|.webm, frames/<clip_id>/000000.jpg ...
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from pipeline.inputs.datasets import DATASETS, FOLDS
from pipeline.sample.face_animation import (ACTION_UNITS, EXPRESSIONS, FaceWarper, HeadPose, blink_curve, envelope,
                                     expression_field, relaxed_rest_pose, to_image_offsets)
from pipeline.shards.layout import interocular_distance, mirror_landmarks
from pipeline.inputs.manifest import write_manifest

DEFAULT_OUT = Path("data/sample")
# name -> (PyAV encoder, container suffix, options). Chosen for reproducible bytes: one thread,
# x264 without macroblock-tree rate control (whose output varied between runs here), VP9 in
# "good" mode ("realtime" adapts to CPU load), and bit-exact muxing (no random Matroska UID).
CODECS = {
    "h264": ("libx264", ".mp4", {"crf": "20", "preset": "veryfast", "threads": "1", "x264-params": "no-mbtree=1"}),
    "mpeg4": ("mpeg4", ".avi", {"b": "1500k", "threads": "1"}),
    "vp9": ("libvpx-vp9", ".webm", {"crf": "32", "b": "0", "deadline": "good", "cpu-used": "5", "threads": "1"}),
}
SIZES = ((320, 240), (480, 360), (640, 360), (640, 480), (360, 480))
FPS_CHOICES = (24, 25, 30)


@dataclass
class ClipPlan:
    """Everything drawn from the seed for one clip; stored in ground_truth.json."""

    clip_id: str
    label: str
    partition: str
    face: int
    codec: str
    storage: str                 # "video" or "frames"
    fps: int
    num_frames: int
    width: int
    height: int
    flip: bool
    intensity: float
    onset: int
    apex: int
    offset: int | None
    release: float
    blinks: list[int]
    brightness: float
    contrast: float
    face_scale: float            # inter-ocular distance in output pixels at rest
    head: dict = field(default_factory=dict)
    expected_failure: str | None = None   # "truncated", "empty_file", "no_face"
    path: str = ""

    @property
    def au_weights(self) -> dict[str, float]:
        return {au: round(w * self.intensity, 4) for au, w in EXPRESSIONS[self.label].items()}


def locate_face(photo: np.ndarray) -> np.ndarray:
    """68 landmarks of the most confident face in `photo`, by the real dlib detector and predictor."""
    from pipeline.face.dlib_models import DlibFaceModels

    models = DlibFaceModels()
    faces = models.detect(photo, upsample=1)
    if not faces:
        raise ValueError("no face found in the photo; use a frontal, well-lit portrait")
    return models.landmarks(photo, faces[0][0]).astype(np.float64)


def load_faces(paths: list[Path]) -> list[np.ndarray]:
    if not paths:
        from skimage.data import astronaut

        return [astronaut()]
    photos = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"--face {path}: not a readable image")
        photos.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return photos


def plan_clips(seed: int, clips_per_class: int, n_faces: int) -> list[ClipPlan]:
    classes = DATASETS["sample"].classes
    rng = np.random.default_rng(seed)
    codec_cycle = list(CODECS)
    plans = []
    for label in classes:
        for i in range(clips_per_class):
            fps = int(rng.choice(FPS_CHOICES))
            n = int(round(rng.uniform(1.0, 3.0) * fps))
            width, height = SIZES[int(rng.integers(len(SIZES)))]
            onset = int(rng.uniform(0.08, 0.35) * n)
            apex = min(n - 2, onset + max(3, int(rng.uniform(0.2, 0.4) * n)))
            offset = None
            if rng.random() < 0.4 and apex + 0.15 * n < n - 3:
                offset = int(apex + rng.uniform(0.1, 0.25) * n)
            blinks = sorted(int(b) for b in rng.integers(0, max(1, n - 4), size=int(rng.integers(0, 3))))
            plans.append(ClipPlan(
                clip_id=f"{label}_{i:02d}", label=label, partition=FOLDS[i % len(FOLDS)],
                face=int(rng.integers(n_faces)), codec=codec_cycle[int(rng.integers(3))], storage="video",
                fps=fps, num_frames=n, width=width, height=height, flip=bool(rng.random() < 0.5),
                intensity=round(float(rng.uniform(0.6, 1.0)), 3), onset=onset, apex=apex, offset=offset,
                release=round(float(rng.uniform(0.3, 0.8)), 3), blinks=blinks,
                brightness=round(float(rng.uniform(-25, 25)), 2), contrast=round(float(rng.uniform(0.8, 1.2)), 3),
                face_scale=round(float(rng.uniform(0.15, 0.21) * height), 2),
                head=dict(roll_deg=round(float(rng.uniform(1, 6)), 2), shift=round(float(rng.uniform(0.01, 0.04)), 3),
                          zoom=round(float(rng.uniform(0.0, 0.06)), 3), period_s=round(float(rng.uniform(1.5, 4)), 2),
                          phase=round(float(rng.uniform(0, 2 * np.pi)), 3),
                          centre=(round(float(rng.uniform(0.42, 0.58)), 3), round(float(rng.uniform(0.4, 0.55)), 3)))))
    # Every codec present whatever the seed; frame folders for two clips.
    for plan, codec in zip(plans[::clips_per_class], codec_cycle * len(classes)):
        plan.codec = codec
    for plan in (plans[1], plans[clips_per_class + 1]) if clips_per_class > 1 else plans[:1]:
        plan.storage, plan.codec = "frames", "jpeg"
    # Hard cases: same generator, then broken (or face removed) on purpose.
    hard = []
    for kind, label, fold in (("truncated", "happiness", "fold1"), ("empty_file", "surprise", "fold2"),
                              ("no_face", "neutral", "fold3")):
        base = ClipPlan(**{**asdict(plans[classes.index(label) * clips_per_class]),
                           "clip_id": f"hard_{kind}", "partition": fold, "codec": "h264",
                           "storage": "video", "expected_failure": kind})
        hard.append(base)
    for plan in plans + hard:
        suffix = CODECS[plan.codec][1] if plan.storage == "video" else ""
        plan.path = f"videos/{plan.clip_id}{suffix}" if plan.storage == "video" else f"frames/{plan.clip_id}"
    return plans + hard


def head_pose(plan: ClipPlan, t: int, neutral: np.ndarray) -> HeadPose:
    """Smooth small head motion: roll, shift and zoom oscillating with the clip's own period."""
    h = plan.head
    phase = 2 * np.pi * t / (plan.fps * h["period_s"]) + h["phase"]
    scale = plan.face_scale / float(interocular_distance(neutral)) * (1 + h["zoom"] * np.sin(phase * 0.7))
    cx, cy = h["centre"]
    target = (plan.width * (cx + h["shift"] * np.sin(phase)), plan.height * (cy + 0.6 * h["shift"] * np.cos(phase * 1.3)))
    centre = neutral.mean(axis=0)
    return HeadPose(scale=scale, roll_deg=h["roll_deg"] * np.sin(phase * 0.9), centre=(centre[0], centre[1]), target=target)


def render_clip(plan: ClipPlan, rest: np.ndarray, warper: FaceWarper) -> tuple[np.ndarray, dict]:
    """Frames (T×H×W×3 uint8 RGB) and ground truth arrays of one clip, animated from the `rest` pose."""
    neutral = warper.neutral
    n = plan.num_frames
    curve = plan.intensity * envelope(n, plan.onset, plan.apex, plan.offset, plan.release)
    blink = blink_curve(n, plan.blinks)
    expression = to_image_offsets(expression_field(EXPRESSIONS[plan.label]), neutral)
    blink_field = to_image_offsets(ACTION_UNITS["AU45_blink"], neutral)
    iod = float(interocular_distance(neutral))
    frames, landmarks = [], []
    for t in range(n):
        points = rest + curve[t] * expression + blink[t] * blink_field
        mouth_open = float(np.linalg.norm(points[66] - points[62]) - np.linalg.norm(rest[66] - rest[62])) / iod
        frame, out_points = warper.render(points, head_pose(plan, t, neutral), (plan.width, plan.height), mouth_open)
        frame = np.clip(frame.astype(np.float32) * plan.contrast + plan.brightness, 0, 255).astype(np.uint8)
        if plan.flip:
            frame = np.ascontiguousarray(frame[:, ::-1])
            out_points = mirror_landmarks(out_points, plan.width)
        frames.append(frame)
        landmarks.append(out_points)
    truth = dict(landmarks=np.asarray(landmarks, np.float32), intensity=curve.astype(np.float32),
                 blink=blink.astype(np.float32), timestamps=(np.arange(n) / plan.fps).astype(np.float64))
    return np.stack(frames), truth


def faceless_frames(plan: ClipPlan) -> np.ndarray:
    """A slow pan over a photo of coffee: real texture and motion, no face."""
    from skimage.data import coffee

    scene = coffee()
    frames = []
    for t in range(plan.num_frames):
        m = cv2.getRotationMatrix2D((scene.shape[1] / 2, scene.shape[0] / 2), 2 * np.sin(t / 9), 1.2)
        m[0, 2] += 25 * np.sin(t / 15)
        frames.append(cv2.resize(cv2.warpAffine(scene, m, scene.shape[1::-1], borderMode=cv2.BORDER_REFLECT),
                                 (plan.width, plan.height), interpolation=cv2.INTER_AREA))
    return np.stack(frames)


def encode_video(frames: np.ndarray, path: Path, codec: str, fps: int, faststart: bool = False) -> None:
    encoder, _, options = CODECS[codec]
    container_options = {"fflags": "+bitexact", **({"movflags": "+faststart"} if faststart else {})}
    with av.open(str(path), "w", options=container_options) as out:
        stream = out.add_stream(encoder, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = dict(options)
        stream.thread_count = 1
        for index, frame in enumerate(frames):
            yuv = av.VideoFrame.from_ndarray(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
            yuv.pts = index
            for packet in stream.encode(yuv):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


_WORKER: dict = {}


def _init_worker(photos: list[np.ndarray], photo_points: list[np.ndarray], rests: list[np.ndarray]) -> None:
    cv2.setNumThreads(1)
    _WORKER["rests"] = rests
    _WORKER["warpers"] = [FaceWarper(p, n) for p, n in zip(photos, photo_points)]


def write_clip(plan: ClipPlan, out: Path) -> None:
    """Render, encode (or break) one clip, and write its ground truth."""
    frames, truth = render_clip(plan, _WORKER["rests"][plan.face], _WORKER["warpers"][plan.face])
    target = out / plan.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if plan.expected_failure == "no_face":
        frames = faceless_frames(plan)
        truth["landmarks"][:] = np.nan
    if plan.storage == "frames":
        target.mkdir(exist_ok=True)
        for t, frame in enumerate(frames):
            cv2.imwrite(str(target / f"{t:06d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
    elif plan.expected_failure == "empty_file":
        target.write_bytes(b"")
    else:
        encode_video(frames, target, plan.codec, plan.fps, faststart=plan.expected_failure == "truncated")
        if plan.expected_failure == "truncated":
            data = target.read_bytes()
            target.write_bytes(data[: int(len(data) * 0.7)])
    np.savez_compressed(out / "truth" / f"{plan.clip_id}.npz", **truth)


def generate(out: Path = DEFAULT_OUT, seed: int = 0, clips_per_class: int = 10,
             faces: list[Path] | None = None, workers: int | None = None, quiet: bool = False,
             relax_smile: float | None = None) -> Path:
    """Write the sample dataset into `out` (replacing what is there) and return the manifest path.

    `relax_smile` undoes that much of the photo's smile for the rest pose (default: 0.8 for the
    built-in portrait, which smiles broadly; 0 for your own faces).
    """
    start = time.perf_counter()
    photos = load_faces(faces or [])
    neutrals = [locate_face(p) for p in photos]
    relax_smile = (0.0 if faces else 0.8) if relax_smile is None else relax_smile
    rests = [relaxed_rest_pose(n, relax_smile) for n in neutrals]
    plans = plan_clips(seed, clips_per_class, len(photos))
    if out.exists():
        shutil.rmtree(out)
    (out / "truth").mkdir(parents=True)
    workers = workers or os.cpu_count() or 1
    # "spawn": forking a process that already runs threads (torch, OpenCV, a test session) can
    # deadlock the children; fresh interpreters cannot.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                             initargs=(photos, neutrals, rests)) as pool:
        for done, _ in enumerate(pool.map(write_clip, plans, [out] * len(plans), chunksize=1), 1):
            if not quiet and sys.stdout.isatty():
                print(f"\r  sample dataset: {done}/{len(plans)} clips", end="", flush=True)
    truth = {
        "seed": seed, "clips_per_class": clips_per_class,
        "faces": [str(f) for f in faces] if faces else ["skimage.data.astronaut"],
        "photo_landmarks": [n.round(2).tolist() for n in neutrals],
        "relax_smile": relax_smile,
        "rest_landmarks": [r.round(2).tolist() for r in rests],
        "clips": {p.clip_id: {**asdict(p), "au_weights": p.au_weights} for p in plans},
    }
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    manifest = out / "manifest.csv"
    write_manifest(manifest, [dict(clip_id=p.clip_id, path=p.path, label=p.label, partition=p.partition,
                                   frames=p.num_frames) for p in plans],
                   dataset="sample", comment=f"Generated by pipeline/sample/generate.py, seed {seed}.")
    if not quiet:
        print(f"\r  sample dataset: {len(plans)} clips ({sum(p.expected_failure is not None for p in plans)} "
              f"broken on purpose) in {out} ({time.perf_counter() - start:.1f} s)")
    return manifest


def contact_sheet(data: Path = DEFAULT_OUT, out: Path | None = None, columns: int = 6,
                  show_landmarks: bool = False) -> Path:
    """A PNG grid: the most intense clip of each class (rows), frames from neutral to apex (columns)."""
    truth = json.loads((data / "ground_truth.json").read_text())["clips"]
    rows = []
    for label in DATASETS["sample"].classes:
        clip = max((c for c in truth.values() if c["label"] == label and c["expected_failure"] is None),
                   key=lambda c: (c["intensity"], c["clip_id"]))  # the clearest example
        frames = read_clip_frames(data / clip["path"])
        landmarks = np.load(data / "truth" / f"{clip['clip_id']}.npz")["landmarks"]
        n = len(frames)
        picks = np.unique(np.linspace(0, min(n - 1, clip["apex"] + 2), columns).astype(int))
        tiles = []
        for t in picks:
            frame = frames[t].copy()
            points = landmarks[t]
            if show_landmarks:
                for x, y in points:
                    cv2.circle(frame, (int(round(x)), int(round(y))), 1, (0, 255, 0), -1)
            centre, size = points.mean(axis=0), 1.6 * np.ptp(points, axis=0).max()
            x0, y0 = (centre - size / 2).astype(int)
            m = np.float32([[1, 0, -x0], [0, 1, -y0]])
            tile = cv2.warpAffine(frame, m, (int(size), int(size)), borderMode=cv2.BORDER_CONSTANT)
            tiles.append(cv2.resize(tile, (160, 160), interpolation=cv2.INTER_AREA))
        while len(tiles) < columns:
            tiles.append(np.zeros_like(tiles[0]))
        label_tile = np.full((160, 150, 3), 255, np.uint8)
        cv2.putText(label_tile, label, (6, 75), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(label_tile, clip["clip_id"], (6, 100), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label_tile] + tiles, axis=1))
    sheet = np.concatenate(rows, axis=0)
    out = out or data / "contact_sheet.png"
    cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return out


def read_clip_frames(path: Path) -> np.ndarray:
    """All frames of a sample clip (video file or JPEG folder) as T×H×W×3 RGB uint8."""
    if path.is_dir():
        return np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(path.glob("*.jpg"))])
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def dataset_digest(data: Path) -> str:
    """SHA-256 over every file of a generated dataset (names and bytes), for determinism checks."""
    digest = hashlib.sha256()
    for path in sorted(p for p in data.rglob("*") if p.is_file() and p.name != "contact_sheet.png"):
        digest.update(str(path.relative_to(data)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
