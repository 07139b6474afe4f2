"""Pipeline stages: shard-level jobs in, shard-level jobs out, models loaded once per worker.

A stage is a small class (after NeMo Curator): declared resources (`num_cpus`, `num_gpus`),
`setup()` once per actor, `process(job)` per shard. Stages hand each other a `ShardJob` —
the shard's manifest rows, each row's status so far, and the path of the working tar the
stage wrote — never frames: the object store carries paths and small records only.

`FaceStage` turns videos into samples: locate → decode → detect and track the face →
crop → confirm the face in every frame and trim faceless ends (pipeline/face/face_frames.py) →
landmarks → parsing masks → write the working tar. With `crop="official"` the frames
are the dataset's own face crops: no detection, the whole frame is the crop
(pipeline/face/whole_frame.py). Every clip that cannot be made
into a sample gets a recorded reason; the shard goes on. A describer light enough to need
no actor of its own (the geometric one) runs inside it, on each sample before it is
written; `DescribeStage` runs any describer as a stage of its own, over the working tar.
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.backends import PROFILES, describer_backend, make_describer, make_detector, make_landmarker, make_parser
from pipeline.face.face_frames import MIN_FACE_SHARE, FewFaceFramesError, NoFaceError
from pipeline.inputs.manifest import CROP_MODES, ClipPathError, Manifest, ManifestRow, load_locator
from pipeline.shards.format import make_sample
from pipeline.shards.tar import ShardWriter


@dataclass
class ShardJob:
    """One output shard's work, passed between stages as JSON."""

    name: str                     # "{partition}-{index:06d}"
    partition: str
    rows: list[dict]              # manifest rows: clip_id, path, label, partition, frames, line
    status: dict[str, dict] = field(default_factory=dict)   # clip_id -> {"status", "reason", "message"}
    work_tar: str | None = None   # the working tar the last stage wrote
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ShardJob":
        return cls(**json.loads(text))

    def fail(self, clip_id: str, reason: str, message: str) -> None:
        self.status[clip_id] = {"status": "failed", "reason": reason, "message": message[:2000]}

    def pending(self) -> list[dict]:
        return [r for r in self.rows if self.status.get(r["clip_id"], {}).get("status") != "failed"]


class Stage:
    """Base class: override `setup` and `process`; set resources as class attributes or in __init__."""

    name = "stage"
    num_cpus: float = 1.0
    num_gpus: float = 0.0

    def setup(self) -> None:
        """Load models; runs once per worker, before the first job."""

    def process(self, job: ShardJob) -> ShardJob:
        raise NotImplementedError


@dataclass(frozen=True)
class FaceConfig:
    """Settings of the face stage; recorded in the dataset index."""

    dataset: str
    manifest: str                 # path of the manifest file
    data_root: str
    work_dir: str                 # where working tars go
    detector: str = PROFILES["cpu"].detector      # backend names (pipeline/backends.py)
    landmarker: str = PROFILES["cpu"].landmarker
    parser: str = PROFILES["cpu"].parser
    crop: str = "detect"          # "detect": find, track and crop the face; "official": the frames are
    #                               the dataset's own face crops, used whole (CROP_MODES)
    crop_size: int = 224
    max_frames: int = 256         # longer clips are subsampled uniformly to this many frames
    max_frame_bytes: int = 512 * 2**20   # decoded frames held per worker, at most
    decode_threads: int = 0       # video decoder threads per worker (0: one per core; 1 when a worker runs per core)
    detect_every: int = 5         # run the detector on every k-th frame, interpolate between
    crop_margin: float = 1.5      # crop side / face box side
    crop_shift_up: float = 0.08   # crop centre raised by this × side (keeps the forehead)
    smooth_window: int = 5        # frames in the box-smoothing window
    trim_faceless: bool = True    # cut the frames before the first and after the last confirmed face frame
    min_face_share: float = MIN_FACE_SHARE   # fewer confirmed face frames than this share of the decoded
    #                               frames: the clip fails with `few_face_frames`
    folder_fps: float = 25.0      # frame rate assumed for frame-folder clips
    weights_dir: str | None = None
    gpus_per_worker: float = 0.0

    def __post_init__(self):
        if self.crop not in CROP_MODES:
            raise ValueError(f"unknown crop mode {self.crop!r}; choose from {', '.join(CROP_MODES)}")


class StepTimes:
    """Seconds spent in each step of the face stage and counts of what passed, over one shard:
    recorded with the shard's stage times (`face.decode`, …, `count.frames_searched`, …), so a
    profile of the pipeline needs no instrumentation of its own."""

    def __init__(self):
        self.seconds: Counter = Counter()
        self.counts: Counter = Counter()

    @contextlib.contextmanager
    def time(self, step: str):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] += time.perf_counter() - began

    def count(self, **counts: int) -> None:
        self.counts.update(counts)

    def record(self, stage: str) -> dict[str, float]:
        return {**{f"{stage}.{k}": round(v, 4) for k, v in self.seconds.items()},
                **{f"count.{k}": v for k, v in self.counts.items()}}


class FaceStage(Stage):
    """`describe`: the settings of a describer to run on each sample here (None: none runs here)."""

    name = "face"

    def __init__(self, config: FaceConfig, describe: DescribeConfig | None = None):
        self.config = config
        self.num_gpus = config.gpus_per_worker
        self.describe_stage = None if describe is None else DescribeStage(describe)
        self.steps = StepTimes()

    def setup(self) -> None:
        c = self.config
        self.detector = make_detector(c.detector, c.weights_dir) if c.crop == "detect" else None
        self.landmarker = make_landmarker(c.landmarker, c.weights_dir)
        self.parser = make_parser(c.parser, c.weights_dir)
        # The rows come with each job: the header is all a clip's lookup needs (not 38,935 rows per actor).
        self.manifest = load_locator(c.manifest, c.data_root) if c.manifest else None
        if self.describe_stage is not None:
            self.describe_stage.setup()

    def process(self, job: ShardJob) -> ShardJob:
        from pipeline.inputs.decode import source_warnings

        start = time.perf_counter()
        describing = 0.0
        self.steps = StepTimes()
        out = Path(self.config.work_dir) / f"{job.name}.face.tar"
        with ShardWriter(out) as writer:
            for row in job.pending():
                try:
                    sample = self.make_sample(row)
                    if self.describe_stage is not None:
                        began = time.perf_counter()
                        described = self.describe_stage.describe_into([sample], job)
                        describing += time.perf_counter() - began
                        if not described:
                            continue
                    with self.steps.time("write"):
                        writer.write(sample)
                    # A clip kept despite skipped or missing frame images says so in its message.
                    job.status[row["clip_id"]] = {"status": "ok", "reason": "",
                                                  "message": "; ".join(source_warnings(sample.meta["source"]))}
                except ClipPathError as err:
                    job.fail(row["clip_id"], err.reason, str(err))
                except FewFaceFramesError as err:
                    job.fail(row["clip_id"], "few_face_frames", str(err))
                except NoFaceError as err:
                    job.fail(row["clip_id"], "no_face", str(err))
                except Exception as err:  # noqa: BLE001 — one bad clip must not stop the shard
                    from pipeline.inputs.decode import DecodeError

                    if isinstance(err, DecodeError):
                        job.fail(row["clip_id"], err.reason, str(err))
                    else:
                        job.fail(row["clip_id"], "error", f"{type(err).__name__}: {err}\n"
                                 + "".join(traceback.format_exc(limit=4)))
        job.work_tar = str(out)
        # Recorded apart, as if the describe stage had run on its own: the stages' times add up.
        job.seconds[self.name] = round(time.perf_counter() - start - describing, 3)
        job.seconds.update(self.steps.record(self.name))
        if self.describe_stage is not None:
            job.seconds[self.describe_stage.name] = round(describing, 3)
        return job

    def make_sample(self, row: dict):
        """The sample of one manifest row (raises ClipPathError, DecodeError, NoFaceError)."""
        manifest_row = ManifestRow(**row)
        path = self.manifest.locate(manifest_row, self.config.data_root, self.config.crop)
        meta = {"dataset": self.manifest.name, "clip_id": row["clip_id"], "label": row["label"],
                "partition": row["partition"]}
        root = Path(self.config.data_root).resolve()
        return self.sample_from_file(path, manifest_row.key, meta, str(path.relative_to(root)), root=root)

    def sample_from_file(self, path: Path, key: str, meta: dict, source_path: str, root: Path | None = None):
        """Decode, track, crop, landmark and parse one video file or frame folder into a ClipSample
        (`crop="official"`: the frames are face crops already; no detection, no cutting).

        `root`: images of a frame folder must not be links leading outside it (None: not checked)."""
        from pipeline.inputs.decode import decode_clip

        c, steps = self.config, self.steps
        # A detector that reads grey frames gets a video's luma plane as decoded, and only the crop
        # regions are converted to RGB (decode_clip(planes=True)): most of a frame is never converted.
        planes = c.crop == "detect" and getattr(self.detector, "takes_luma", False)
        with steps.time("decode"):
            clip = decode_clip(path, max_frames=c.max_frames, max_bytes=c.max_frame_bytes, folder_fps=c.folder_fps,
                               root=root, planes=planes, threads=c.decode_threads)
        steps.count(frames_decoded=int(clip.source["frames"]), frames_kept=clip.shape[0],
                    pixels_kept=int(np.prod(clip.shape)))
        faces = self.official_faces(clip.frames) if c.crop == "official" else self.detect_faces(clip, path)
        decoded_hw = clip.shape[1:3]
        timestamps = clip.timestamps[faces.start:faces.stop]
        clip.frames = clip.planes = None  # the crops are all we keep; free the full frames before the models run
        with steps.time("landmarks"):
            landmarks, confidence = self.landmarker.predict(faces.crops, faces.face_in_crop)
        if faces.confidence is not None:
            # Where the detector confirmed the face, its confidence; 0 on frames without a confirmed face.
            confidence = faces.confidence
        with steps.time("masks"):
            masks = self.parser.parse(faces.crops, landmarks)
        # The squares are in the pixels of the frames as decoded, which a memory budget may have
        # shrunk from W to w pixels across: in the source's own pixels (centres at integers, as
        # docs/shard-format.md states) x = (x_decoded + 0.5)·W/w − 0.5, per axis.
        ratio = np.array([clip.source["width"] / decoded_hw[1], clip.source["height"] / decoded_hw[0]] * 2)
        found = confidence[faces.detected]
        meta = {
            **meta,
            "source": {"path": source_path, **clip.source},
            "crop": {"mode": c.crop},
            "quality": {**faces.quality,
                        "mean_landmark_confidence": round(float(found.mean()) if len(found) else 0.0, 4)},
        }
        with steps.time("encode"):
            return make_sample(
                key=key, meta=meta, frames=faces.crops, timestamps=timestamps,
                boxes=((faces.boxes + 0.5) * ratio - 0.5).astype(np.float32), face_detected=faces.detected,
                landmarks=landmarks, landmarks_conf=confidence, masks=masks)

    def detect_faces(self, clip, path: Path) -> "FaceCrops":
        """`crop="detect"`: the detector on every k-th frame, the subject's track, a steady square crop,
        the face confirmed frame by frame (`pipeline.face.face_frames`), faceless ends trimmed.
        `clip`: a DecodedClip, of RGB frames or of 4:2:0 planes (then the detector reads the luma).
        Raises NoFaceError (no face on any searched frame) or FewFaceFramesError."""
        from pipeline.face.face_frames import check_face_share, face_frames
        from pipeline.face.shots import shot_index
        from pipeline.face.track import (crop_affines, crop_squares, cut_crops, cut_crops_from_planes, main_face_track,
                                         map_boxes)

        c, steps, n = self.config, self.steps, clip.shape[0]
        searched = clip.planes.y if clip.planes is not None else clip.frames
        probe = list(range(0, n, c.detect_every))
        if probe[-1] != n - 1:
            probe.append(n - 1)
        steps.count(frames_searched=len(probe))
        with steps.time("detect"):
            found = self.detector.detect([searched[t] for t in probe])
        with steps.time("track"):
            track = main_face_track({t: faces for t, faces in zip(probe, found) if faces}, n, c.smooth_window)
            shots = shot_index(searched)
        if track is None:
            raise NoFaceError(f"{path}: no face in any of the {len(probe)} frames searched")
        with steps.time("crop"):
            squares = crop_squares(track.boxes, c.crop_margin, c.crop_shift_up)
            affines = crop_affines(squares, c.crop_size)
            crops = cut_crops(clip.frames, affines, c.crop_size) if clip.planes is None else \
                cut_crops_from_planes(clip.planes, affines, c.crop_size)
        face_in_crop = map_boxes(track.boxes, affines)
        with steps.time("confirm"):
            confidence = self.detector.confirm(crops, face_in_crop)
        frames = face_frames(confidence, self.detector.confirm_threshold, shots, track.detected, c.trim_faceless)
        check_face_share(frames, c.min_face_share, path)
        keep = slice(frames.start, frames.stop)
        steps.count(frames_confirmed=int(frames.confirmed.sum()), frames_trimmed=n - (frames.stop - frames.start))
        detected = track.detected[keep]
        return FaceCrops(crops=crops[keep], boxes=squares[keep], face_in_crop=face_in_crop[keep],
                         detected=frames.confirmed[keep], confidence=frames.confidence[keep],
                         start=frames.start, stop=frames.stop,
                         quality={"face_frames": int(frames.confirmed.sum()), "frames_decoded": n,
                                  "trimmed": frames.trimmed, "faces_seen": track.faces_seen,
                                  "shots": int(shots[-1]) + 1, "frames_searched": len(probe),
                                  "mean_detector_score": round(float(track.scores[keep][detected].mean())
                                                               if detected.any() else 0.0, 4)})

    def official_faces(self, frames: np.ndarray) -> "FaceCrops":
        """`crop="official"`: each frame is the dataset's own face crop, resized whole to crop_size
        when its size differs; the face box given to the landmark model is the whole crop."""
        from pipeline.face.whole_frame import whole_frame_boxes, whole_frame_crops, whole_frame_face_box

        c, (n, height, width) = self.config, frames.shape[:3]
        with self.steps.time("crop"):
            crops = whole_frame_crops(frames, c.crop_size)
        return FaceCrops(crops=crops, boxes=whole_frame_boxes(n, width, height, c.crop_size),
                         face_in_crop=whole_frame_face_box(n, c.crop_size), detected=np.ones(n, bool),
                         confidence=None, start=0, stop=n,
                         quality={"face_frames": n, "frames_decoded": n, "frames_searched": 0})


@dataclass
class FaceCrops:
    """The face of every frame of a clip, however it was found."""

    crops: np.ndarray          # T×S×S×3 uint8 RGB, the stored frames
    boxes: np.ndarray          # (T, 4) the crop regions in decoded-frame pixels (pixel centres at integers)
    face_in_crop: np.ndarray   # (T, 4) the face box in crop pixels, for the landmark model
    detected: np.ndarray       # (T,) bool: the face is confirmed in this frame (or given: official crops)
    confidence: np.ndarray | None   # (T,) the detector's face confidence, 0 where not confirmed (None: no detector)
    start: int                 # the stored frames are the decoded frames [start, stop)
    stop: int
    quality: dict              # face_frames, frames_decoded, frames_searched; with a detector also trimmed,
    #                            faces_seen, shots, mean_detector_score


@dataclass(frozen=True)
class DescribeConfig:
    """Settings of the description stage; recorded in the dataset index."""

    describer: str                # a name in pipeline.backends.DESCRIBERS
    work_dir: str
    # clips per describe() call; for a batched describer also the clips it decodes together
    # (None: the describer's own default)
    batch_size: int | None = 8
    options: tuple[tuple[str, Any], ...] = ()   # describer keyword arguments (model id, revision, …)
    gpus_per_worker: float = 0.0


class DescribeStage(Stage):
    """Adds a motion description (and, from the geometric describer, per-frame AU signals) to every
    sample of the working tar. It reads samples, never videos: rerunning it over finished shards
    (`python -m pipeline.describe`) does not redo the face stage."""

    name = "describe"

    def __init__(self, config: DescribeConfig):
        self.config = config
        self.num_gpus = config.gpus_per_worker

    def setup(self) -> None:
        self.describer = make_describer(self.config.describer, **describer_kwargs(self.config))

    def process(self, job: ShardJob) -> ShardJob:
        from pipeline.shards.tar import read_shard

        start = time.perf_counter()
        out = Path(self.config.work_dir) / f"{job.name}.describe.tar"
        samples = list(read_shard(job.work_tar))
        with ShardWriter(out) as writer:
            size = self.config.batch_size or getattr(self.describer, "batch_size", None) or 16
            for first in range(0, len(samples), size):
                for sample in self.describe_into(samples[first:first + size], job):
                    writer.write(sample)
        job.work_tar = str(out)
        job.seconds[self.name] = round(time.perf_counter() - start, 3)
        return job

    def describe_into(self, samples: list, job: ShardJob) -> list:
        """Attach a description to each sample and return them, or fail them all in `job` and return
        none when the describer raises."""
        try:
            descriptions = self.describer.describe(samples)
        except Exception as err:  # noqa: BLE001 — a failing batch fails its clips, not the run
            for sample in samples:
                job.fail(sample.meta["clip_id"], "describe_error", f"{type(err).__name__}: {err}")
            return []
        for sample, description in zip(samples, descriptions):
            attach_description(sample, description)
        return samples


def attach_description(sample, description) -> None:
    """Put a Description into a ClipSample; AU signals already there stay unless new ones come. A
    description already there (`make describe` over finished shards) is kept in the new record's
    `earlier` list, oldest first, so that a re-describe never loses the first pass."""
    earlier = []
    if sample.description_record:
        previous = dict(sample.description_record)
        earlier = list(previous.pop("earlier", [])) + [previous]
    sample.description = description.text
    sample.description_record = {**description.record, "raw_text": description.raw_text,
                                 "text": description.text, **({"earlier": earlier} if earlier else {})}
    if description.signals is not None:
        sample.au, sample.au_names = description.signals.astype(np.float32), list(description.signal_names)


# --- planning a run -------------------------------------------------------------------------
def plan_shards(manifest: Manifest, shard_size: int) -> list[ShardJob]:
    jobs = []
    for partition in manifest.partitions:
        rows = [asdict(r) for r in manifest.rows if r.partition == partition]
        for index, start in enumerate(range(0, len(rows), shard_size)):
            jobs.append(ShardJob(name=f"{partition}-{index:06d}", partition=partition,
                                 rows=rows[start:start + shard_size]))
    return jobs


def describer_kwargs(describe: DescribeConfig) -> dict:
    """The describer's keyword arguments: its options, and the batch size where it decodes in batches."""
    kwargs = dict(describe.options)
    if describe.batch_size and describer_backend(describe.describer).batched:
        kwargs["batch_size"] = describe.batch_size
    return kwargs


def describe_identity(describe: DescribeConfig | None) -> dict | None:
    return None if describe is None else make_describer(describe.describer, **describer_kwargs(describe)).identity()


def describe_config(describer: str | None, work_dir: Path, options: dict, gpus: float,
                    batch_size: int | None = None) -> DescribeConfig | None:
    """The description stage's settings, or None when descriptions are switched off. A GPU describer
    (Video-LLaVA, Qwen2.5-VL) takes a whole GPU per actor where there is one (and runs, slowly, on CPU
    where there is not). `batch_size` (None: the describer's default) is the clips a batched describer
    decodes together; it is a speed setting, not part of the run's configuration (`options`)."""
    if not describer or describer == "none":
        return None
    backend = describer_backend(describer)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"the describe batch size must be positive, got {batch_size}")
    on_gpu = backend.gpu and gpus > 0
    return DescribeConfig(describer=describer, work_dir=str(work_dir), batch_size=batch_size if backend.batched else 16,
                          options=tuple(sorted((k, v) for k, v in options.items() if v is not None)),
                          gpus_per_worker=1.0 if on_gpu else 0.0)
