"""Load, validate and locate a dataset manifest: one row per clip (id, path, class, partition).

A manifest is a CSV file with `#`-comment header lines carrying its metadata:

    # dataset: mafw                       (a built-in dataset: classes come from datasets.py)
    # classes: happiness, sadness, ...    (a user's own dataset: its classes, in label order)
    # partitions: train, test             (optional for a user's dataset)
    clip_id,path,label,partition,frames
    00025,data/clips/00025.mp4,anger,fold1,47

`path` is relative to DATA_ROOT; `frames` (the annotated frame count) may be empty. Every
problem in a manifest is reported at once, each naming the file, the line and the fault.
Locating a clip under DATA_ROOT is separate from loading: a missing file or a path that
escapes DATA_ROOT is a per-clip `ClipPathError`, which the pipeline records as a failure.
With `--crop official` only the dataset's own face-crop folders are accepted (`no_official_crop`
when the clip is there only in another form, such as the raw video).

`make manifest DATASET=… DATA_ROOT=…` (`python -m pipeline.preprocess DATASET --data-root DIR
--check`) checks a manifest and shows how many of its clips are present under DATA_ROOT.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.inputs.datasets import DATASETS, dataset_spec

CROP_MODES = ("detect", "official")   # find and crop the face | the dataset's own face crops as they are
COLUMNS = ("clip_id", "path", "label", "partition", "frames")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # dataset, class and partition names
_CLIP_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_MAX_REPORTED = 30


class ManifestError(ValueError):
    """A manifest that cannot be used; `problems` holds one line per fault."""

    def __init__(self, source: Path | str, problems: list[str]):
        self.source = str(source)
        self.problems = problems
        shown = "\n  ".join(problems[:_MAX_REPORTED])
        more = f"\n  ... and {len(problems) - _MAX_REPORTED} more" if len(problems) > _MAX_REPORTED else ""
        super().__init__(f"{self.source}: {len(problems)} problem(s):\n  {shown}{more}")


class ClipPathError(Exception):
    """A clip that cannot be read from DATA_ROOT; `reason` is a short stable code."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


def sample_key(clip_id: str) -> str:
    """The shard sample key of a clip: dot-free and stable (`Action/Happy/0267` -> `Action_Happy_0267`)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", clip_id)


@dataclass(frozen=True)
class ManifestRow:
    clip_id: str
    path: str
    label: str
    partition: str
    frames: int | None
    line: int  # line number in the manifest file, for messages

    @property
    def key(self) -> str:
        return sample_key(self.clip_id)


@dataclass(frozen=True)
class Manifest:
    name: str
    source: Path
    classes: tuple[str, ...]
    partitions: tuple[str, ...]
    rows: tuple[ManifestRow, ...]
    layouts: tuple[str, ...] = ()
    official_layouts: tuple[str, ...] = ()   # where the dataset's own face crops are (datasets.py)

    @property
    def default_crop(self) -> str:
        """`official` for a dataset that ships its own face crops (DFEW, FERV39k, MAFW), else `detect`."""
        return "official" if self.official_layouts else "detect"

    def __len__(self) -> int:
        return len(self.rows)

    def class_index(self, label: str) -> int:
        return self.classes.index(label)

    def counts(self) -> dict[str, Counter]:
        """Clips per class, for each partition."""
        out: dict[str, Counter] = {p: Counter() for p in self.partitions}
        for row in self.rows:
            out[row.partition][row.label] += 1
        return out

    def candidate_paths(self, row: ManifestRow) -> list[str]:
        """The manifest's path, then the dataset's known layouts, without repeats."""
        seen: list[str] = []
        for rel in (row.path, *(t.format(clip_id=row.clip_id) for t in self.layouts)):
            if rel and rel not in seen:
                seen.append(rel)
        return seen

    def official_paths(self, row: ManifestRow) -> list[str]:
        """Where the dataset's own face crops of `row` may be (`--crop official`): its official-crop
        layouts; for a dataset with none (a user's own), the manifest's path, taken as a crop already."""
        if not self.official_layouts:
            return [row.path]
        return list(dict.fromkeys(t.format(clip_id=row.clip_id) for t in self.official_layouts))

    def locate(self, row: ManifestRow, data_root: Path | str, crop: str = "detect") -> Path:
        """The file or frame folder of `row` under `data_root`; raises ClipPathError.

        `crop="official"` accepts only the dataset's own face crops: a clip present only in another
        form (a raw video) is `no_official_crop`, naming the paths looked at and the file found."""
        if crop == "detect":
            return self._first(row, data_root, self.candidate_paths(row))
        if crop != "official":
            raise ValueError(f"unknown crop mode {crop!r}; choose from {', '.join(CROP_MODES)}")
        tried = self.official_paths(row)
        try:
            return self._first(row, data_root, tried)
        except ClipPathError as err:
            if err.reason != "missing_file":
                raise
            try:
                other = self._first(row, data_root, self.candidate_paths(row))
            except ClipPathError:
                raise err from None
        root = Path(data_root).resolve()
        raise ClipPathError(
            "no_official_crop",
            f"clip {row.clip_id!r}: none of the dataset's own face crops under {root} ({', '.join(tried)}); "
            f"found only {other.relative_to(root) if other.is_relative_to(root) else other}, which needs "
            "face detection: add the face-crop frames, or run with --crop detect")

    @staticmethod
    def _first(row: ManifestRow, data_root: Path | str, tried: list[str]) -> Path:
        """The first of `tried` (paths relative to `data_root`) that exists; raises ClipPathError."""
        root = Path(data_root).resolve()
        for rel in tried:
            candidate = root / rel
            # '..' or an absolute path (refused by load_manifest, but rows can be made by hand):
            # outside whether or not anything is there.
            if not Path(os.path.normpath(candidate)).is_relative_to(root):
                raise ClipPathError(
                    "path_outside_root", f"{rel!r} leads to {os.path.normpath(candidate)}, outside DATA_ROOT {root}")
            if not (candidate.exists() or candidate.is_symlink()):
                continue
            real = candidate.resolve()
            if not real.is_relative_to(root):
                raise ClipPathError(
                    "path_outside_root",
                    f"{candidate} resolves to {real}, outside DATA_ROOT {root}")
            if not real.exists():
                raise ClipPathError("missing_file", f"{candidate} is a broken link")
            return real
        raise ClipPathError(
            "missing_file",
            f"clip {row.clip_id!r} not found under {root}; tried: {', '.join(tried)}")


def _parse_header(lines: list[str]) -> dict[str, str]:
    meta = {}
    for text in lines:
        body = text.lstrip("#").strip()
        if ":" in body:
            key, value = body.split(":", 1)
            meta[key.strip().lower()] = value.strip()
    return meta


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _check_path(path: str) -> str | None:
    """Why `path` may not be used as a path under DATA_ROOT, or None."""
    if "\\" in path or re.match(r"^[A-Za-z]:", path):
        return "use forward slashes and no drive letter"
    # String tests give the same answers as PurePosixPath without building one per row (38,935 of them).
    if path.startswith("/"):
        return "is absolute; paths are relative to DATA_ROOT"
    if ".." in path.split("/"):
        return "contains '..' and would escape DATA_ROOT"
    return None


def _check_clip_id(clip_id: str) -> str | None:
    segments = clip_id.split("/")
    if any(s in ("", ".", "..") or not _CLIP_SEGMENT.match(s) for s in segments):
        return "may hold only letters, digits, '_', '-', '.' and '/'-separated parts (no '..')"
    return None


def resolve_dataset(dataset: str, data_root: Path | str | None = None) -> Path:
    """The manifest file for a built-in dataset name, or the path the user gave."""
    if dataset in DATASETS:
        return DATASETS[dataset].manifest_path(data_root)
    path = Path(dataset)
    if path.suffix == "" and not path.exists():
        dataset_spec(dataset)  # raises with the list of known names
    return path


@dataclass(frozen=True)
class _Header:
    """What a manifest's `#` lines say: its name, classes, partitions and (built-in) layouts."""

    name: str
    classes: tuple[str, ...]
    partitions: tuple[str, ...]
    layouts: tuple[str, ...]
    official_layouts: tuple[str, ...] = ()


def _read_header(meta: dict[str, str], default_name: str, problems: list[str]) -> _Header:
    """The dataset the header names (a built-in one, or the user's own with its classes); appends problems."""
    name = meta.get("dataset", default_name)
    if name in DATASETS:
        spec = DATASETS[name]
        if "classes" in meta and _split_list(meta["classes"]) != spec.classes:
            problems.append(f"header: '# classes:' differs from the built-in {name} classes {', '.join(spec.classes)}")
        return _Header(name, spec.classes, spec.partitions, tuple(spec.layouts), tuple(spec.official_crops))
    if not _NAME.match(name):
        problems.append(f"header: dataset name {name!r} must be lower-case letters, digits, '_' or '-'")
    classes = _split_list(meta.get("classes", ""))
    partitions = _split_list(meta.get("partitions", ""))
    if not classes:
        problems.append("header: a manifest of your own needs a '# classes: a, b, c' line "
                        "(or '# dataset: <built-in name>')")
    for kind, names in (("class", classes), ("partition", partitions)):
        for bad in [n for n in names if not _NAME.match(n)]:
            problems.append(f"header: {kind} name {bad!r} must be lower-case letters, digits, '_' or '-'")
        for dup in [n for n, c in Counter(names).items() if c > 1]:
            problems.append(f"header: {kind} {dup!r} listed twice")
    return _Header(name, classes, partitions, ())


def _row_problems(where: str, value: dict[str, str], header: _Header) -> tuple[list[str], int | None]:
    """The faults of one row's own fields (not those against other rows), and its frame count."""
    clip_id, path, label, partition = (value[c] for c in COLUMNS[:4])
    problems = [f"{where}: empty {c}" for c in COLUMNS[:4] if not value[c]]
    if clip_id and (why := _check_clip_id(clip_id)):
        problems.append(f"{where}: clip id {clip_id!r} {why}")
    if path and (why := _check_path(path)):
        problems.append(f"{where}: path {path!r} {why}")
    if label and label not in header.classes:
        problems.append(f"{where}: unknown class {label!r} (classes: {', '.join(header.classes)})")
    if partition:
        if header.partitions and partition not in header.partitions:
            problems.append(f"{where}: unknown partition {partition!r} (partitions: {', '.join(header.partitions)})")
        elif not header.partitions and not _NAME.match(partition):
            problems.append(f"{where}: partition {partition!r} must be lower-case letters, digits, '_' or '-'")
    frames = None
    if value.get("frames"):
        try:
            frames = int(value["frames"])
            if frames < 1:
                raise ValueError
        except ValueError:
            problems.append(f"{where}: frames {value['frames']!r} is not a positive integer")
    return problems, frames


class _Uniqueness:
    """Clip ids and the sample keys they map to, each allowed once across the manifest."""

    def __init__(self):
        self.line_of_id: dict[str, int] = {}
        self.line_of_key: dict[str, tuple[int, str]] = {}

    def problems(self, where: str, line: int, clip_id: str) -> list[str]:
        if clip_id in self.line_of_id:
            return [f"{where}: duplicate clip id {clip_id!r} (first on line {self.line_of_id[clip_id]})"]
        if not clip_id or _check_clip_id(clip_id):   # an id already refused is not compared with later ones
            return []
        self.line_of_id[clip_id] = line
        key = sample_key(clip_id)
        if key in self.line_of_key:
            other_line, other_id = self.line_of_key[key]
            return [f"{where}: clip id {clip_id!r} gives the same sample key {key!r} as {other_id!r} on line {other_line}"]
        self.line_of_key[key] = (line, clip_id)
        return []


def load_manifest(dataset: str | Path, data_root: Path | str | None = None) -> Manifest:
    """Load and validate a manifest by dataset name or file path; raises ManifestError.

    `data_root` matters only for generated datasets, whose manifest lives in their data folder.
    """
    source = resolve_dataset(str(dataset), data_root)
    if not source.is_file():
        raise ManifestError(source, ["file not found"])
    text = source.read_text(encoding="utf-8-sig").splitlines()
    body = [t for t in text if t.strip() and not t.startswith("#")]
    problems: list[str] = []
    header = _read_header(_parse_header([t for t in text if t.startswith("#")]), source.stem.lower(), problems)

    if not body:
        raise ManifestError(source, problems + ["no column header and no rows"])
    reader = csv.reader(body)
    columns = tuple(c.strip() for c in next(reader))
    missing = [c for c in COLUMNS if c not in columns and c != "frames"]
    if missing:
        raise ManifestError(source, problems + [
            f"column header {','.join(columns)!r} lacks {', '.join(missing)}; expected {','.join(COLUMNS)}"])
    col = {c: columns.index(c) for c in COLUMNS if c in columns}
    line_numbers = [i + 1 for i, t in enumerate(text) if t.strip() and not t.startswith("#")][1:]

    rows: list[ManifestRow] = []
    unique = _Uniqueness()
    seen_partitions: list[str] = []
    for line, fields in zip(line_numbers, reader):
        where = f"line {line}"
        if len(fields) != len(columns):
            problems.append(f"{where}: {len(fields)} fields, expected {len(columns)} ({','.join(columns)})")
            continue
        value = {c: fields[i].strip() for c, i in col.items()}
        row_problems, frames = _row_problems(where, value, header)
        row_problems += unique.problems(where, line, value["clip_id"])
        if row_problems:
            problems.extend(row_problems)
            continue
        if value["partition"] not in seen_partitions:
            seen_partitions.append(value["partition"])
        rows.append(ManifestRow(value["clip_id"], value["path"], value["label"], value["partition"], frames, line))

    if problems:
        raise ManifestError(source, problems)
    if not rows:
        raise ManifestError(source, ["no rows"])
    return Manifest(name=header.name, source=source, classes=tuple(header.classes),
                    partitions=tuple(header.partitions) or tuple(sorted(seen_partitions)),
                    rows=tuple(rows), layouts=tuple(header.layouts), official_layouts=header.official_layouts)


def load_locator(dataset: str | Path, data_root: Path | str | None = None) -> Manifest:
    """The manifest's name, classes and layouts without its rows: what locating a clip needs.

    Read from the `#` header alone, so a stage's actors, which get their rows with each shard,
    neither parse nor hold a manifest of 38,935 rows each (the driver has validated it)."""
    source = resolve_dataset(str(dataset), data_root)
    if not source.is_file():
        raise ManifestError(source, ["file not found"])
    header_lines = []
    with source.open(encoding="utf-8-sig") as f:
        for text in f:
            if text.startswith("#"):
                header_lines.append(text.rstrip("\n"))
            elif text.strip():
                break
    problems: list[str] = []
    header = _read_header(_parse_header(header_lines), source.stem.lower(), problems)
    if problems:
        raise ManifestError(source, problems)
    return Manifest(name=header.name, source=source, classes=tuple(header.classes),
                    partitions=tuple(header.partitions), rows=(), layouts=tuple(header.layouts),
                    official_layouts=header.official_layouts)


def write_manifest(path: Path | str, rows: list[ManifestRow] | list[dict], *, dataset: str | None = None,
                   classes: tuple[str, ...] = (), partitions: tuple[str, ...] = (),
                   comment: str = "") -> None:
    """Write rows (ManifestRow or dicts with COLUMNS keys) in the manifest format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        for text in comment.splitlines():
            f.write(f"# {text}\n")
        if dataset:
            f.write(f"# dataset: {dataset}\n")
        if classes:
            f.write(f"# classes: {', '.join(classes)}\n")
        if partitions:
            f.write(f"# partitions: {', '.join(partitions)}\n")
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            get = row.get if isinstance(row, dict) else lambda c, r=row: getattr(r, c)
            frames = get("frames")
            writer.writerow([get("clip_id"), get("path"), get("label"), get("partition"),
                             "" if frames is None else frames])


PARTITION_SCHEMES = ("fold1 .. foldK (k-fold: each fold is tested once, trained on the others)",
                     "train + test (a validation split is carved from train)",
                     "train + val + test (val chooses the epoch and is never trained on)")


def partition_scheme(partitions: list[str] | tuple[str, ...]) -> str:
    """Which of the trainer's partition schemes `partitions` follow: "folds", "train_test" or
    "train_val_test"; raises ValueError naming the partitions found and the schemes understood.
    (The pipeline writes any partitions; `make train` reads only these.)"""
    names = set(partitions)
    if len(names) >= 2 and all(re.fullmatch(r"fold[1-9][0-9]*", p) for p in names):
        return "folds"
    if names == {"train", "test"}:
        return "train_test"
    if names == {"train", "val", "test"}:
        return "train_val_test"
    raise ValueError(f"partitions {', '.join(partitions) or '(none)'}: make train understands "
                     + "; ".join(PARTITION_SCHEMES) + ". Rename the partitions in the manifest's partition column")


def summary(manifest: Manifest) -> str:
    """Clips per class and partition, as a table."""
    counts = manifest.counts()
    width = max(len(c) for c in manifest.classes) + 2
    head = "class".ljust(width) + "".join(p.rjust(9) for p in manifest.partitions) + "total".rjust(9)
    lines = [f"{manifest.name}: {len(manifest)} clips, {len(manifest.classes)} classes "
             f"({manifest.source})", head]
    for label in manifest.classes:
        per = [counts[p][label] for p in manifest.partitions]
        lines.append(label.ljust(width) + "".join(f"{n:9d}" for n in per) + f"{sum(per):9d}")
    totals = [sum(counts[p].values()) for p in manifest.partitions]
    lines.append("total".ljust(width) + "".join(f"{n:9d}" for n in totals) + f"{sum(totals):9d}")
    return "\n".join(lines)


def presence(manifest: Manifest, data_root: str | Path, crop: str = "detect") -> str:
    """How many of the manifest's clips are under `data_root` (in the form `crop` mode reads), by
    layout found, and why the others are not."""
    root = Path(data_root)
    if not root.is_dir():
        return (f"DATA_ROOT {root} does not exist: clips not located "
                f"(set DATA_ROOT=/path/to/{manifest.name.upper()})")
    found: Counter = Counter()
    failures: Counter = Counter()
    for row in manifest.rows:
        try:
            where = manifest.locate(row, root, crop).relative_to(root.resolve())
            found[str(where).replace(row.clip_id, "{clip_id}")] += 1
        except ClipPathError as err:
            failures[err.reason] += 1
    lines = [f"under {root}: {sum(found.values())} of {len(manifest)} clips found"
             + (" as the dataset's own face crops (--crop official)" if crop == "official" else "")]
    lines += [f"  {n:7d}  {layout}" for layout, n in found.most_common(5)]
    lines += [f"  {n:7d}  {reason}" for reason, n in failures.most_common()]
    return "\n".join(lines)
