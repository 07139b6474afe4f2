"""Shard format v2: how one clip becomes the members of a WebDataset sample, and back.

A sample is the tar members `<key>.<field>` below; every field is a plain file format
(JPEG stream, `.npy`/`.npz` without pickles, JSON, UTF-8 text), so `tarfile`, `webdataset`
or Hugging Face `datasets` users can read a shard without this module. docs/shard-format.md
documents each field (dtype, shape, units, coordinate frame) and docs/schema/ holds their
machine-readable schemas; keep the three in step and bump FORMAT_VERSION on any change an
older reader would misread.

    frames.mjpeg        T baseline JPEGs (RGB, crop_size²), concatenated: an MJPEG stream
    frames_offsets.npy  int64 (T+1,): byte offsets of frame t = [o[t], o[t+1])
    timestamps.npy      float64 (T,): seconds since the start of the source clip
    boxes.npy           float32 (T,4): the square crop in source pixels (x0, y0, x1, y1)
    face_detected.npy   bool (T,): the subject's face is confirmed in this frame (a face frame)
    landmarks.npy       float32 (T,68,2): iBUG 68 points (x, y) in crop pixels
    landmarks_conf.npy  float32 (T,): per-frame confidence in [0, 1]; 0 on frames without a confirmed face
    masks.npz           uint8 (T,H,W) under key "masks": CelebAMask-HQ parsing labels
    description.txt     the motion description (emotion words filtered out); optional
    description.json    how it was made: backend, then model, prompt hash, raw text, …; optional
    au.npz              per-frame facial action signals: "signals" float32 (T,K), "names" str (K,); optional
    meta.json           dataset, clip id, class name, partition, source video facts, flags

The JSON members keep a fixed set of keys, each always present with one type, so a reader
that infers column types from the first few samples (Hugging Face `datasets`) types every
sample alike; whatever varies between clips, inputs or backends (optional keys, lists that may
be empty, values that may be null) is stored as one JSON object in the string `details_json`.
`pack_record`/`unpack_record` convert between that layout and the plain nested dicts our code
uses (`ClipSample.meta`, `ClipSample.description_record`). Version 1 shards, which stored the
plain dicts, are still read.

Members a reader does not know (later passes may add fields) are kept in `extras`.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

FORMAT_VERSION = 2
READS_VERSIONS = (1, 2)  # what decode_sample understands
JPEG_QUALITY = 90  # chosen by bench/frame_encoding.py; see docs/shard-format.md
NUM_LANDMARKS = 68
REQUIRED_META = ("dataset", "clip_id", "label", "partition", "source")
REQUIRED_SOURCE = ("fps", "frames")
KNOWN_FIELDS = ("meta.json", "frames.mjpeg", "frames_offsets.npy", "timestamps.npy", "boxes.npy",
                "face_detected.npy", "landmarks.npy", "landmarks_conf.npy", "masks.npz",
                "description.txt", "description.json", "au.npz")
OPTIONAL_FIELDS = ("masks.npz", "description.txt", "description.json", "au.npz")
_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

# The typed part of the JSON members: key -> Python type, or a nested object of them. Every key
# is written in every sample; the rest of a record, with its nesting, goes into DETAILS.
DETAILS = "details_json"
META_FIELDS: dict[str, Any] = {
    "format_version": int, "dataset": str, "clip_id": str, "label": str, "partition": str,
    "num_frames": int, "crop_size": int,
    "frames_encoding": {"codec": str, "quality": int},
    "source": {"path": str, "fps": float, "frames": int},
}
DESCRIPTION_FIELDS: dict[str, Any] = {"backend": str}
# Typed keys a record may lack: written as "" and left out again when read.
OPTIONAL_TEXT = frozenset({"source.path", "backend"})


class ShardFormatError(ValueError):
    """A sample that does not follow the shard format; the message names the sample and field."""


def _typed(value: Any, kind: type, where: str) -> Any:
    """`value` as the JSON type `kind` (int, float or str), or ShardFormatError."""
    if kind is str and isinstance(value, str):
        return value
    if kind is int and isinstance(value, Integral) and not isinstance(value, bool):
        return int(value)
    if kind is int and isinstance(value, Real) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    if kind is float and isinstance(value, Real) and not isinstance(value, bool):
        return float(value)
    raise ShardFormatError(f"{where} must be {kind.__name__}, got {value!r}")


def _split(record: Mapping[str, Any], fields: Mapping[str, Any], where: str, prefix: str = "") -> tuple[dict, dict]:
    """(the typed keys of `fields`, every one present; everything else with its nesting)."""
    typed: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in record.items():
        if key == DETAILS:
            raise ShardFormatError(f"{where}: {prefix}{DETAILS} is a reserved key")
        kind = fields.get(key)
        if kind is None:
            rest[key] = value
        elif isinstance(kind, dict):
            if not isinstance(value, Mapping):
                raise ShardFormatError(f"{where}: {prefix}{key} must be an object, got {value!r}")
            typed[key], inner = _split(value, kind, where, f"{prefix}{key}.")
            if inner:
                rest[key] = inner
        else:
            typed[key] = _typed(value, kind, f"{where}: {prefix}{key}")
    for key, kind in fields.items():
        if key in typed:
            continue
        if isinstance(kind, dict):
            typed[key], _ = _split({}, kind, where, f"{prefix}{key}.")
        elif f"{prefix}{key}" in OPTIONAL_TEXT:
            typed[key] = ""
        else:
            raise ShardFormatError(f"{where}: lacks {prefix}{key}")
    return typed, rest


def pack_record(record: Mapping[str, Any], fields: Mapping[str, Any], where: str = "record") -> dict[str, Any]:
    """A plain nested dict -> its stored form: the keys of `fields` typed and always present (""
    for a missing optional text), everything else as a JSON object in the string `details_json`."""
    typed, rest = _split(record, fields, where)
    typed[DETAILS] = json.dumps(rest, sort_keys=True, ensure_ascii=False)
    return typed


def _merge(into: dict[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in more.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            into[key] = _merge(dict(into[key]), value)
        else:
            into[key] = value
    return into


def unpack_record(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of a JSON member (v2) -> the plain nested dict: `details_json` parsed and
    merged over the typed keys (objects key by key), empty optional texts left out."""
    if not isinstance(stored, Mapping):
        raise ValueError(f"a JSON object was expected, got {type(stored).__name__}")
    details = json.loads(stored.get(DETAILS) or "{}")
    if not isinstance(details, dict):
        raise ValueError(f"{DETAILS} holds {type(details).__name__}, not a JSON object")
    plain = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in stored.items() if k != DETAILS}
    for dotted in OPTIONAL_TEXT:
        *parents, last = dotted.split(".")
        holder = plain
        for parent in parents:
            holder = holder.get(parent) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and holder.get(last) == "":
            del holder[last]
    return _merge(plain, details)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


# The header numpy writes for a plain array: {'descr': '<f4', 'fortran_order': False, 'shape': (57, 68, 2), }
_NPY_HEADER = re.compile(rb"\{'descr': '([<>|=][a-zA-Z]\d*)', 'fortran_order': False, 'shape': \(((?:\d+, ?)*\d*)\), \}\s*")


def _load_npy(data: bytes) -> np.ndarray:
    """An .npy member -> a writable array. Parsing numpy's usual header directly takes ~10 µs where
    np.load spends ~50 µs (ast.literal_eval), which adds up over a sample's six arrays in every
    loader worker; any other header (Fortran order, structured dtypes, ...) goes through np.load."""
    data = memoryview(data)
    if bytes(data[:6]) == b"\x93NUMPY" and len(data) >= 10 and data[6] in (1, 2, 3):
        size_bytes = 2 if data[6] == 1 else 4
        header_len = int.from_bytes(data[8:8 + size_bytes], "little")
        start = 8 + size_bytes + header_len
        match = _NPY_HEADER.fullmatch(bytes(data[8 + size_bytes:start]))
        if match:
            dtype = np.dtype(match.group(1).decode())
            shape = tuple(int(n) for n in match.group(2).split(b",") if n.strip())
            count = int(np.prod(shape, dtype=np.int64))
            if dtype.kind in "biufc?" and len(data) - start == count * dtype.itemsize:
                return np.frombuffer(data, dtype, count, start).reshape(shape).copy()
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_jpeg_stream(frames: np.ndarray, quality: int = JPEG_QUALITY) -> tuple[bytes, np.ndarray]:
    """T×H×W×3 RGB uint8 frames -> (concatenated JPEGs, int64 offsets of length T+1). Baseline JPEGs,
    4:2:0, with Huffman tables optimised for each image: the pixels of OpenCV's default encoding at
    the same quality in ~5 % fewer bytes, decoded as fast (bench/frame_encoding.py)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ShardFormatError(f"frames must be T×H×W×3 uint8 RGB, got {frames.shape} {frames.dtype}")
    parts = []
    for frame in frames:
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1])
        if not ok:
            raise ShardFormatError("JPEG encoding failed")
        parts.append(jpg.tobytes())
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return b"".join(parts), offsets


def encode_masks(masks: np.ndarray) -> bytes:
    """T×H×W uint8 parsing labels -> compressed .npz bytes (key "masks")."""
    if masks.ndim != 3 or masks.dtype != np.uint8:
        raise ShardFormatError(f"masks must be T×H×W uint8, got {masks.shape} {masks.dtype}")
    buf = io.BytesIO()
    np.savez_compressed(buf, masks=masks)
    return buf.getvalue()


@dataclass
class ClipSample:
    """One clip as stored in a shard. Frames and masks stay encoded until asked for."""

    key: str
    meta: dict[str, Any]
    frames_mjpeg: bytes
    frame_offsets: np.ndarray
    timestamps: np.ndarray
    boxes: np.ndarray
    face_detected: np.ndarray
    landmarks: np.ndarray
    landmarks_conf: np.ndarray
    masks_npz: bytes | None = None
    description: str | None = None
    description_record: dict[str, Any] | None = None
    au: np.ndarray | None = None          # T×K float32 action-unit signals
    au_names: list[str] | None = None     # their K names
    extras: dict[str, bytes] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.frame_offsets) - 1

    @property
    def label(self) -> str:
        return self.meta["label"]

    def frame_jpeg(self, index: int) -> bytes:
        """The JPEG bytes of frame `index`."""
        return self.frames_mjpeg[self.frame_offsets[index]:self.frame_offsets[index + 1]]

    def frames(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Decode the frames at `indices` (all when None) -> N×H×W×3 uint8 RGB."""
        indices = range(self.num_frames) if indices is None else indices
        out = []
        for i in indices:
            bgr = cv2.imdecode(np.frombuffer(self.frame_jpeg(int(i)), np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ShardFormatError(f"sample {self.key}: frame {int(i)} is not a decodable JPEG")
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return np.stack(out)

    def masks(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray | None:
        """Parsing labels at `indices` (all when None) -> N×H×W uint8, or None if absent."""
        if self.masks_npz is None:
            return None
        with np.load(io.BytesIO(self.masks_npz), allow_pickle=False) as npz:
            masks = npz["masks"]
        return masks if indices is None else masks[np.asarray(indices, dtype=np.int64)]


def make_sample(key: str, meta: Mapping[str, Any], frames: np.ndarray, timestamps: np.ndarray,
                boxes: np.ndarray, face_detected: np.ndarray, landmarks: np.ndarray,
                landmarks_conf: np.ndarray, masks: np.ndarray | None = None,
                description: str | None = None, description_record: Mapping[str, Any] | None = None,
                jpeg_quality: int = JPEG_QUALITY) -> ClipSample:
    """Build a ClipSample from decoded arrays (frames T×S×S×3 RGB uint8), encoding frames and masks."""
    mjpeg, offsets = encode_jpeg_stream(frames, jpeg_quality)
    meta = dict(meta)
    meta.setdefault("crop_size", int(frames.shape[1]))
    meta.setdefault("frames_encoding", {"codec": "jpeg", "quality": jpeg_quality})
    sample = ClipSample(
        key=key, meta=meta, frames_mjpeg=mjpeg, frame_offsets=offsets,
        timestamps=np.asarray(timestamps, np.float64), boxes=np.asarray(boxes, np.float32),
        face_detected=np.asarray(face_detected, bool), landmarks=np.asarray(landmarks, np.float32),
        landmarks_conf=np.asarray(landmarks_conf, np.float32),
        masks_npz=None if masks is None else encode_masks(masks),
        description=description,
        description_record=None if description_record is None else dict(description_record))
    validate(sample, masks_shape=None if masks is None else masks.shape)
    return sample


def validate(sample: ClipSample, masks_shape: tuple[int, ...] | None = None) -> None:
    """Raise ShardFormatError naming the sample and field if `sample` breaks the format."""
    where = f"sample {sample.key!r}"
    if not _KEY.match(sample.key):
        raise ShardFormatError(f"{where}: keys may hold only letters, digits, '_' and '-' (no dots)")
    missing = [k for k in REQUIRED_META if k not in sample.meta]
    missing += [f"source.{k}" for k in REQUIRED_SOURCE if k not in sample.meta.get("source", {})]
    if missing:
        raise ShardFormatError(f"{where}: meta.json lacks {', '.join(missing)}")
    t = sample.num_frames
    if t < 1:
        raise ShardFormatError(f"{where}: no frames")
    expected = {
        "timestamps.npy": (sample.timestamps, (t,)),
        "boxes.npy": (sample.boxes, (t, 4)),
        "face_detected.npy": (sample.face_detected, (t,)),
        "landmarks.npy": (sample.landmarks, (t, NUM_LANDMARKS, 2)),
        "landmarks_conf.npy": (sample.landmarks_conf, (t,)),
    }
    for name, (array, shape) in expected.items():
        if array.shape != shape:
            raise ShardFormatError(f"{where}: {name} has shape {array.shape}, expected {shape} for {t} frames")
    if np.any(np.diff(sample.frame_offsets) <= 0) or sample.frame_offsets[-1] != len(sample.frames_mjpeg):
        raise ShardFormatError(f"{where}: frames_offsets.npy does not index frames.mjpeg")
    if masks_shape is not None and masks_shape[0] != t:
        raise ShardFormatError(f"{where}: masks.npz has {masks_shape[0]} frames, expected {t}")
    if sample.au is not None:
        if sample.au.ndim != 2 or sample.au.shape[0] != t or len(sample.au_names or []) != sample.au.shape[1]:
            raise ShardFormatError(f"{where}: au.npz signals {sample.au.shape} do not match {t} frames "
                                   f"and {len(sample.au_names or [])} names")


def encode_sample(sample: ClipSample) -> dict[str, bytes]:
    """ClipSample -> {"__key__": key, field: bytes} in member order, ready for a tar."""
    validate(sample)
    where = f"sample {sample.key!r} meta.json"
    meta = pack_record({**sample.meta, "format_version": FORMAT_VERSION, "num_frames": sample.num_frames},
                       META_FIELDS, where)
    members: dict[str, Any] = {
        "__key__": sample.key,
        "meta.json": _json(meta),
        "frames.mjpeg": sample.frames_mjpeg,
        "frames_offsets.npy": _npy(sample.frame_offsets.astype(np.int64)),
        "timestamps.npy": _npy(sample.timestamps),
        "boxes.npy": _npy(sample.boxes),
        "face_detected.npy": _npy(sample.face_detected),
        "landmarks.npy": _npy(sample.landmarks),
        "landmarks_conf.npy": _npy(sample.landmarks_conf),
    }
    if sample.masks_npz is not None:
        members["masks.npz"] = sample.masks_npz
    if sample.description is not None:
        members["description.txt"] = sample.description.encode("utf-8")
        record = pack_record(sample.description_record or {}, DESCRIPTION_FIELDS,
                             f"sample {sample.key!r} description.json")
        members["description.json"] = _json(record)
    if sample.au is not None:
        buf = io.BytesIO()
        np.savez(buf, signals=sample.au.astype(np.float32), names=np.array(sample.au_names, dtype=str))
        members["au.npz"] = buf.getvalue()
    for name, data in sample.extras.items():
        if name in members:
            raise ShardFormatError(f"sample {sample.key!r}: extra field {name!r} shadows a known field")
        members[name] = data
    return members


def _json(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, ensure_ascii=False).encode()


def decode_sample(members: Mapping[str, Any]) -> ClipSample:
    """{"__key__": key, field: bytes} (from our tar reader or a raw `webdataset` sample) -> ClipSample."""
    key = members.get("__key__", "?")
    where = f"sample {key!r}" + (f" in {members['__url__']}" if "__url__" in members else "")
    missing = [f for f in KNOWN_FIELDS if f not in members and f not in OPTIONAL_FIELDS]
    if missing:
        raise ShardFormatError(f"{where}: missing {', '.join(missing)}")
    try:
        meta = json.loads(members["meta.json"])
        version = meta.get("format_version") if isinstance(meta, dict) else None
        if version not in READS_VERSIONS or isinstance(version, bool):
            raise ShardFormatError(f"{where}: format_version {version!r}; this reader understands "
                                   f"versions {', '.join(map(str, READS_VERSIONS))} (update the toolkit)")
        description = members.get("description.txt")
        record = members.get("description.json")
        record = None if record is None else json.loads(record)
        if version >= 2:  # v1 stored the plain dicts
            meta = unpack_record(meta)
            record = None if record is None else unpack_record(record)
        au = au_names = None
        if "au.npz" in members:
            with np.load(io.BytesIO(members["au.npz"]), allow_pickle=False) as npz:
                au, au_names = npz["signals"], [str(n) for n in npz["names"]]
        sample = ClipSample(
            key=key, meta=meta, frames_mjpeg=bytes(members["frames.mjpeg"]),
            frame_offsets=_load_npy(members["frames_offsets.npy"]),
            timestamps=_load_npy(members["timestamps.npy"]),
            boxes=_load_npy(members["boxes.npy"]),
            face_detected=_load_npy(members["face_detected.npy"]),
            landmarks=_load_npy(members["landmarks.npy"]),
            landmarks_conf=_load_npy(members["landmarks_conf.npy"]),
            masks_npz=members.get("masks.npz"),
            description=None if description is None else bytes(description).decode("utf-8"),
            description_record=record,
            au=au, au_names=au_names,
            extras={k: v for k, v in members.items() if k not in KNOWN_FIELDS and not k.startswith("__")})
    except ShardFormatError:
        raise
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ShardFormatError(f"{where}: unreadable ({type(err).__name__}: {err})") from err
    validate(sample)
    return sample
