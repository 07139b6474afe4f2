"""Decode one clip — a video file or a folder of frame images — into upright RGB frames.

Step 1 of the pipeline. `decode_clip` returns at most `max_frames` frames spread uniformly
over the clip, their timestamps in seconds, and a JSON-able record of facts about the
source; every kind of bad input raises `DecodeError` with a short, stable `reason` code
(the shard sidecars record it) and a message naming the file.

Videos are read with PyAV in two passes over the file:

1. demux the video stream's packets without decoding, to count frames cheaply and to see
   whether the container ends before its own index says it should (a truncated file);
2. decode every frame (inter-frame codecs need them all, and a failure late in the stream
   must still be noticed), but convert to RGB, rotate and keep only the selected ones.

Memory stays bounded: the output array for the selected frames is allocated once, already
downscaled so that it fits in `max_bytes`, and at most one full-size frame exists besides it.

With `planes=True` an upright 4:2:0 video (`yuv420p`, even width and height, the usual
H.264/H.265 clip) is not converted at all: its Y, U and V planes are kept as decoded
(`DecodedClip.planes`, 1.5 bytes per pixel instead of 3), for a caller that needs the
luma of every frame (a face detector) and colour only in a small region of each
(`I420Planes.rgb_region`, converted by the same swscale call that would have converted the
whole frame, so its pixels are identical). Any other clip is decoded to RGB as usual.

Rotation comes from the display matrix FFmpeg attaches to each decoded frame
(`VideoFrame.rotation`, counter-clockwise degrees); mirroring in the matrix is ignored and
angles that are not quarter turns are rounded to the nearest one. Timestamps come from each
frame's pts, so variable-frame-rate clips keep their true times.

Frame folders (DFEW and FERV39k ship face crops as image folders) are read with OpenCV in
natural sort order, at an assumed `folder_fps`. When every image is named `<prefix><number>`
with one common prefix (`000001.jpg`, `frame_12.png`), the numbers place the frames in time:
a gap in the numbering (1, 2, 4) is a missing frame, counted in `missing_frames`, and the
frames after it keep their true times; a folder numbered in steps (1, 5, 9) is a clip
sampled every k-th frame, not a clip with gaps. Other names are timed by position. An
image that does not decode is skipped and counted in `skipped_frames`; the clip is kept
while at least half of the images read decode (`corrupt_frames` otherwise,
`no_readable_frames` when none does). With `root` given, an image that is a symbolic link
leading outside `root` fails the clip (`path_outside_root`), as the clip's own path would.

Failure reasons: missing_file, unreadable, empty_file, not_a_video, no_video_stream,
truncated, decode_error, empty_folder, no_readable_frames, corrupt_frames, path_outside_root.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.error
import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
_CODEC_OF_SUFFIX = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".bmp": "bmp"}


@dataclass
class I420Planes:
    """The frames of a 4:2:0 clip as decoded: y T×H×W, u and v T×H/2×W/2 (uint8; H, W even), with
    the colour tags of the source frames, which the conversion to RGB follows."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    colorspace: int = 2      # PyAV's VideoFrame.colorspace / color_range (2, 0: unspecified)
    color_range: int = 0

    def rgb_region(self, t: int, x0: int, y0: int, x1: int, y1: int,
                   size: tuple[int, int] | None = None) -> np.ndarray:
        """Frame `t`'s pixels [y0:y1, x0:x1] as (y1-y0)×(x1-x0)×3 RGB; x0, y0, x1, y1 must be even (the
        region must cover whole chroma samples) and inside the frame. `size` (width, height): shrink
        the region to that size in the same swscale call, by area averaging."""
        w, h = x1 - x0, y1 - y0
        stacked = np.empty((h * 3 // 2, w), np.uint8)
        stacked[:h] = self.y[t, y0:y1, x0:x1]
        quarter = h * w // 4
        flat = stacked[h:].reshape(-1)
        flat[:quarter] = self.u[t, y0 // 2:y1 // 2, x0 // 2:x1 // 2].reshape(-1)
        flat[quarter:] = self.v[t, y0 // 2:y1 // 2, x0 // 2:x1 // 2].reshape(-1)
        frame = av.VideoFrame.from_ndarray(stacked, format="yuv420p")
        frame.colorspace, frame.color_range = self.colorspace, self.color_range
        # One thread: swscale's default starts a thread pool per call, which costs more than a
        # region's conversion (0.35 against 0.08 ms for 224×224).
        if size is None:
            return frame.reformat(format="rgb24", threads=1).to_ndarray()
        return frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA",
                              threads=1).to_ndarray()


@dataclass
class DecodedClip:
    """Decoded frames of one clip.

    frames: T×H×W×3 uint8 RGB, upright (None when `planes` holds them instead). timestamps:
    float64 (T,), seconds from the start of the stream, strictly increasing. source: JSON-able
    facts about the input (see module doc and `_video_source` / `_folder_source` for the keys).
    planes: the frames as decoded 4:2:0 planes (decode_clip(planes=True) on such a clip), else None.
    """

    frames: np.ndarray | None
    timestamps: np.ndarray
    source: dict[str, Any]
    planes: I420Planes | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(frames, height, width) as decoded."""
        return tuple(self.planes.y.shape) if self.planes is not None else tuple(self.frames.shape[:3])


class DecodeError(Exception):
    """A clip that cannot be decoded; `reason` is a short stable code, `message` names the file."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self):
        # Ray and multiprocessing pickle exceptions; the default would call cls(message).
        return (type(self), (self.reason, self.message))

    def __repr__(self) -> str:
        return f"DecodeError({self.reason!r}, {self.message!r})"


def decode_clip(
    path: str | Path,
    max_frames: int = 256,
    max_bytes: int = 512 * 2**20,
    folder_fps: float = 25.0,
    root: str | Path | None = None,
    planes: bool = False,
    threads: int = 0,
) -> DecodedClip:
    """Decode a video file or a folder of frame images; see the module docstring.

    `root`: the folder a frame folder's images must stay in (DATA_ROOT); None checks nothing.
    `planes`: keep an upright 4:2:0 video's planes unconverted (`DecodedClip.planes`).
    `threads`: the video decoder's threads (0: FFmpeg's choice, one per core; 1 where every core
    already runs a worker of its own, which then decodes faster without the threads' hand-offs).
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    if max_bytes < 3:
        raise ValueError(f"max_bytes must allow at least one RGB pixel, got {max_bytes}")
    if not folder_fps > 0:
        raise ValueError(f"folder_fps must be positive, got {folder_fps}")
    path = Path(path)
    if _is_directory(path):
        return _decode_folder(path, max_frames, max_bytes, folder_fps, root)
    _check_readable_file(path)
    return _decode_video(path, max_frames, max_bytes, folder_fps, planes, threads)


# ---------------------------------------------------------------------------- shared rules


def uniform_indices(count: int, max_frames: int) -> np.ndarray:
    """Indices of the frames to keep: all of them, or `max_frames` spread over the clip."""
    if count <= max_frames:
        return np.arange(count, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, count - 1, max_frames)).astype(np.int64))


def fit_scale(frames: int, height: int, width: int, max_bytes: int) -> float:
    """The downscale factor (≤ 1) that makes frames×H×W×3 bytes fit in max_bytes."""
    total = frames * height * width * 3
    return 1.0 if total <= max_bytes else math.sqrt(max_bytes / total)


def _scaled(height: int, width: int, scale: float) -> tuple[int, int]:
    # Flooring keeps the product within budget; a 1-pixel floor keeps shapes valid.
    if scale >= 1.0:
        return height, width
    return max(1, math.floor(height * scale)), max(1, math.floor(width * scale))


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    # Area averaging keeps a strong downscale from aliasing; for a mild one (a 720p clip of 256
    # frames fits the 512 MiB cap at 0.85) bilinear is as sharp and five times faster.
    scale = min(height / image.shape[0], width / image.shape[1])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if scale < 0.75 else cv2.INTER_LINEAR)


def _is_directory(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError as err:  # e.g. a parent folder we may not enter
        raise DecodeError("unreadable", f"{path}: cannot inspect path: {err}") from err


def _check_readable_file(path: Path) -> None:
    """Fail early, with a precise reason, on files PyAV would only call 'invalid data'."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
    except FileNotFoundError as err:
        raise DecodeError("missing_file", f"{path}: no such file") from err
    except OSError as err:
        raise DecodeError("unreadable", f"{path}: cannot open: {err.strerror or err}") from err
    if size == 0:
        raise DecodeError("empty_file", f"{path}: file is empty (0 bytes)")


# ---------------------------------------------------------------------------- videos


@dataclass
class _Survey:
    """What the demux-only pass learned about the video stream."""

    frames: int          # packets that carry a frame to show (not flagged discard)
    packets: int         # all non-empty packets demuxed
    indexed: int         # entries in the container's index when it was opened
    last_corrupt: bool   # the final packet was cut short
    demux_error: str | None
    promised: bool       # the header gives the stream a frame count or a duration


# The box types an ISO base-media file (MP4, MOV, M4V, 3GP) starts with.
_ISO_BOXES = (b"ftyp", b"mdat", b"moov", b"free", b"skip", b"wide", b"pnot")


def _iso_media_without_index(path: Path) -> bool:
    """Whether `path` starts like an MP4/MOV file. FFmpeg refuses such a file outright when its
    index (the moov box, which most recorders write last) is missing: a recording cut short."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:8] in _ISO_BOXES


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        # "replace": odd bytes in a title tag must not make a good video unreadable.
        return av.open(str(path), mode="r", metadata_errors="replace")
    except av.error.FileNotFoundError as err:
        raise DecodeError("missing_file", f"{path}: no such file") from err
    except av.error.FFmpegError as err:
        if isinstance(err, OSError):  # PermissionError, IsADirectoryError, EIO, …
            raise DecodeError("unreadable", f"{path}: cannot open: {err}") from err
        if isinstance(err, av.error.EOFError):  # recognised, but the file ends inside its header
            raise DecodeError("truncated", f"{path}: truncated: the file ends inside its header") from err
        if _iso_media_without_index(path):
            raise DecodeError("truncated", f"{path}: truncated: an MP4/MOV file without its index (moov box), "
                                           "as a recording cut short leaves it") from err
        # InvalidDataError: no demuxer recognises it (or its header is too damaged to parse).
        raise DecodeError("not_a_video", f"{path}: not a media container FFmpeg can read: {err}") from err


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    for stream in container.streams.video:
        # Cover art in audio files shows up as a one-picture video stream.
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    kinds = ", ".join(s.type for s in container.streams) or "none"
    raise DecodeError("no_video_stream", f"{path}: no video stream (streams: {kinds})")


def _survey(path: Path) -> _Survey:
    frames = packets = 0
    last_corrupt = False
    demux_error = None
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        # Snapshot before demuxing: some demuxers grow the index as they read.
        indexed = len(stream.index_entries)
        promised = bool(stream.frames) or bool(stream.duration and stream.duration > 0)
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet at the end
                    continue
                packets += 1
                frames += not packet.is_discard
                last_corrupt = packet.is_corrupt
        except av.error.FFmpegError as err:
            demux_error = str(err)
    return _Survey(frames, packets, indexed, last_corrupt, demux_error, promised)


def _truncation(survey: _Survey) -> str | None:
    """Why the container looks cut short, or None."""
    if survey.demux_error is not None:
        return f"reading packets failed after {survey.packets}: {survey.demux_error}"
    if survey.last_corrupt:
        return f"the last of {survey.packets} packets is cut short"
    if survey.packets == 0 and survey.promised:
        return "the header describes a video stream but the file holds none of its packets"
    if survey.packets < survey.indexed:
        return f"the file ends after {survey.packets} of the {survey.indexed} packets its index lists"
    return None


def _decode_video(path: Path, max_frames: int, max_bytes: int, fallback_fps: float,
                  planes: bool = False, threads: int = 0) -> DecodedClip:
    survey = _survey(path)
    problem = _truncation(survey)
    if problem is not None:
        raise DecodeError("truncated", f"{path}: truncated: {problem}")
    if survey.frames == 0:
        raise DecodeError("decode_error", f"{path}: the video stream has no packets")
    keep = uniform_indices(survey.frames, max_frames)

    with _open_container(path) as container:
        stream = _video_stream(container, path)
        if threads == 1:
            stream.codec_context.thread_count = 1
        else:
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
        collector = _FrameCollector(keep, max_bytes, stream, fallback_fps, planes)
        try:
            for frame in container.decode(stream):
                collector.add(frame)
        except av.error.FFmpegError as err:
            if collector.decoded:
                raise DecodeError(
                    "truncated", f"{path}: decoding failed after {collector.decoded} frames: {err}") from err
            raise DecodeError("decode_error", f"{path}: no frame decodes: {err}") from err
        if not collector.decoded:
            raise DecodeError("decode_error", f"{path}: no frame decodes from {survey.frames} packets")
        return collector.result(stream, len(keep) < survey.frames)


class _FrameCollector:
    """Takes decoded frames in order; converts, rotates and stores only the selected ones."""

    def __init__(self, keep: np.ndarray, max_bytes: int, stream: av.video.stream.VideoStream,
                 fallback_fps: float, planes: bool = False):
        self.keep = keep
        self.want_planes = planes
        self.planes: I420Planes | None = None
        self.max_bytes = max_bytes
        self.time_base = stream.time_base
        self.start_pts = stream.start_time
        # Used only to repair missing or non-increasing pts.
        self.nominal_fps = float(stream.average_rate or stream.guessed_rate or fallback_fps)
        self.decoded = 0
        self.kept = 0
        self.first_time = self.last_time = 0.0
        self.repaired = 0
        self.frames: np.ndarray | None = None
        self.times = np.empty(len(keep), np.float64)

    def add(self, frame: av.VideoFrame) -> None:
        if self.decoded == 0:
            self._setup(frame)
        time = self._time(frame)
        if self.kept < len(self.keep) and self.decoded == self.keep[self.kept]:
            if self.planes is not None:
                self._store_planes(frame)
            else:
                self.frames[self.kept] = self._pixels(frame)
            self.times[self.kept] = time
            self.kept += 1
        self.decoded += 1

    def _setup(self, frame: av.VideoFrame) -> None:
        """Fix the clip's geometry from its first frame."""
        self.quarter_turns = round(frame.rotation / 90) % 4
        self.pix_fmt = frame.format.name
        self.coded_hw = (frame.height, frame.width)
        upright = self.coded_hw[::-1] if self.quarter_turns % 2 else self.coded_hw
        self.upright_hw = upright
        height, width = self.coded_hw
        if (self.want_planes and self.pix_fmt == "yuv420p" and self.quarter_turns == 0
                and height % 2 == 0 and width % 2 == 0):
            self._setup_planes(frame)
            return
        self.scale = fit_scale(len(self.keep), *upright, self.max_bytes)
        self.stored_hw = _scaled(*self.coded_hw, self.scale)
        out_hw = self.stored_hw[::-1] if self.quarter_turns % 2 else self.stored_hw
        self.frames = np.empty((len(self.keep), *out_hw, 3), np.uint8)

    def _setup_planes(self, frame: av.VideoFrame) -> None:
        """Keep the planes: 1.5 bytes per pixel, so the same budget holds twice the pixels (even sides)."""
        height, width = self.coded_hw
        self.scale = fit_scale(len(self.keep), height, width, 2 * self.max_bytes)
        h, w = (height, width) if self.scale >= 1.0 else \
            (max(2, math.floor(height * self.scale / 2) * 2), max(2, math.floor(width * self.scale / 2) * 2))
        n = len(self.keep)
        self.planes = I420Planes(np.empty((n, h, w), np.uint8), np.empty((n, h // 2, w // 2), np.uint8),
                                 np.empty((n, h // 2, w // 2), np.uint8), int(frame.colorspace),
                                 int(frame.color_range))

    def _time(self, frame: av.VideoFrame) -> float:
        pts, time = frame.pts, None
        if pts is not None and self.time_base is not None:
            if self.start_pts is None:  # the container did not say where the stream starts
                self.start_pts = pts
            time = float((pts - self.start_pts) * self.time_base)
        if self.decoded and (time is None or time <= self.last_time):
            # Missing or repeated pts (raw streams, broken muxers): keep times strictly increasing.
            time = self.last_time + 1.0 / self.nominal_fps
            self.repaired += 1
        elif time is None:
            time = 0.0
        if self.decoded == 0:
            self.first_time = time
        self.last_time = time
        return time

    def _store_planes(self, frame: av.VideoFrame) -> None:
        sizes = ((frame.height, frame.width), (frame.height // 2, frame.width // 2), (frame.height // 2, frame.width // 2))
        for plane, store, (h, w) in zip(frame.planes, (self.planes.y, self.planes.u, self.planes.v), sizes):
            pixels = np.frombuffer(plane, np.uint8)[: h * plane.line_size].reshape(h, plane.line_size)[:, :w]
            target = store[self.kept]
            if target.shape == (h, w):
                target[...] = pixels
            else:   # the memory budget shrank the clip (bilinear or area, as _resize chooses)
                target[...] = _resize(pixels, *target.shape)

    def _pixels(self, frame: av.VideoFrame) -> np.ndarray:
        # to_ndarray goes through swscale, which handles gray, 10-bit, 4:4:4, palettes, …
        rgb = _resize(frame.to_ndarray(format="rgb24"), *self.stored_hw)
        return np.rot90(rgb, self.quarter_turns)

    def result(self, stream: av.video.stream.VideoStream, subsampled: bool) -> DecodedClip:
        span = self.last_time - self.first_time
        if self.decoded > 1 and span > 0:
            fps, fps_assumed = (self.decoded - 1) / span, False
        elif stream.average_rate or stream.guessed_rate:
            fps, fps_assumed = float(stream.average_rate or stream.guessed_rate), False
        else:
            fps, fps_assumed = self.nominal_fps, True
        source = {
            "kind": "video",
            "fps": float(fps),
            "frames": int(self.decoded),
            "width": int(self.upright_hw[1]),
            "height": int(self.upright_hw[0]),
            "duration_s": float(span + 1.0 / fps),
            "rotation": int(self.quarter_turns * 90),
            "pix_fmt": self.pix_fmt,
            "codec": stream.codec_context.name,
            "fps_assumed": fps_assumed,
            "subsampled": bool(subsampled),
            "scale": float(self.scale),
            "skipped_frames": 0,
            "missing_frames": 0,
            "timestamps_repaired": int(self.repaired),
        }
        # Fewer frames than packets (a decoder that drops some) leaves the tail unfilled.
        times = self.times[: self.kept].copy()
        if self.planes is not None:
            p = self.planes
            return DecodedClip(None, times, source, I420Planes(p.y[: self.kept], p.u[: self.kept], p.v[: self.kept],
                                                                p.colorspace, p.color_range))
        return DecodedClip(self.frames[: self.kept], times, source)


# ---------------------------------------------------------------------------- frame folders


def natural_key(name: str) -> tuple:
    """Sort key that orders frame2 before frame10."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


def _list_images(folder: Path, root: str | Path | None = None) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError as err:
        raise DecodeError("unreadable", f"{folder}: cannot list folder: {err.strerror or err}") from err
    images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if root is not None:
        real_root = Path(root).resolve()
        for image in images:
            if image.is_symlink() and not (real := image.resolve()).is_relative_to(real_root):
                raise DecodeError("path_outside_root",
                                  f"{folder}: image {image.name} resolves to {real}, outside DATA_ROOT {real_root}")
    return sorted(images, key=lambda p: natural_key(p.name))


_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def frame_numbers(images: list[Path]) -> tuple[np.ndarray, int] | None:
    """(positions, missing): each image's place in time in frames, and how many numbers are absent.

    Only for folders whose images are all `<one common prefix><number>.<ext>` with distinct
    numbers (in the order given); the step between numbers is their greatest common divisor,
    so a folder of every 4th frame has no gaps. None when the names do not say.
    """
    if len(images) < 2:
        return None
    matches = [_NUMBERED.match(p.stem) for p in images]
    if not all(matches) or len({m.group(1).lower() for m in matches}) != 1:
        return None
    numbers = np.array([int(m.group(2)) for m in matches], np.int64)
    steps = np.diff(numbers)
    if (steps <= 0).any():  # repeated numbers (f1.png and f1.jpg) or an order the sort did not give
        return None
    step = int(np.gcd.reduce(steps))
    positions = (numbers - numbers[0]) // step
    return positions, int(positions[-1] + 1 - len(images))


def _read_rgb(path: Path) -> np.ndarray | None:
    # IMREAD_COLOR gives 3 channels for gray and 16-bit images too, and applies EXIF rotation.
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _decode_folder(folder: Path, max_frames: int, max_bytes: int, fps: float,
                   root: str | Path | None = None) -> DecodedClip:
    images = _list_images(folder, root)
    if not images:
        raise DecodeError("empty_folder", f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    numbered = frame_numbers(images)
    positions, missing = numbered if numbered else (np.arange(len(images), dtype=np.int64), 0)
    keep = uniform_indices(len(images), max_frames)

    frames: np.ndarray | None = None
    times = np.empty(len(keep), np.float64)
    kept = 0
    skipped: list[str] = []
    first_hw = (0, 0)
    scale = 1.0
    for index in keep:
        rgb = _read_rgb(images[index])
        if rgb is None:
            skipped.append(images[index].name)
            continue
        if frames is None:
            first_hw = rgb.shape[:2]
            scale = fit_scale(len(keep), *first_hw, max_bytes)
            frames = np.empty((len(keep), *_scaled(*first_hw, scale), 3), np.uint8)
        # Mixed sizes are resized to the first image's (scaled) size in the same step.
        frames[kept] = _resize(rgb, *frames.shape[1:3])
        times[kept] = positions[index] / fps
        kept += 1
    if frames is None:
        raise DecodeError("no_readable_frames",
                          f"{folder}: none of the {len(keep)} images read could be decoded")
    if 2 * len(skipped) > len(keep):
        raise DecodeError("corrupt_frames",
                          f"{folder}: {len(skipped)} of the {len(keep)} images read do not decode "
                          f"(more than half), e.g. {', '.join(skipped[:5])}")

    span = int(positions[-1]) + 1
    source = {
        "kind": "frames",
        "fps": float(fps),
        "frames": len(images),
        "width": int(first_hw[1]),
        "height": int(first_hw[0]),
        "duration_s": span / fps,
        "rotation": 0,
        "pix_fmt": "rgb24",
        "codec": "+".join(sorted({_CODEC_OF_SUFFIX[p.suffix.lower()] for p in images})),
        "fps_assumed": True,
        "subsampled": len(keep) < len(images),
        "scale": float(scale),
        "skipped_frames": len(skipped),
        "skipped_images": skipped[:20],
        "missing_frames": missing,
        "timestamps_repaired": 0,
    }
    return DecodedClip(frames[:kept], times[:kept].copy(), source)


def source_warnings(source: dict[str, Any]) -> list[str]:
    """Problems a kept clip was decoded despite, as short sentences (empty for a clean clip)."""
    warnings = []
    if source.get("skipped_frames"):
        names = ", ".join(source.get("skipped_images", [])[:5])
        warnings.append(f"{source['skipped_frames']} frame image(s) do not decode and were skipped"
                        + (f" ({names})" if names else ""))
    if source.get("missing_frames"):
        warnings.append(f"{source['missing_frames']} frame(s) missing from the numbering")
    return warnings
