"""Check a dataset folder against its manifest, index and stats before trusting it (or after copying it).

    python -m pipeline.verify shards/sample [--manifest data/sample/manifest.csv] [--deep] [--strict]
    make verify OUT=shards/sample

Checks that every manifest row is accounted for exactly once (in the status file of the shard
the pipeline planned for it), that every shard's tar is whole (size, SHA-256, every member
readable, end-of-archive marker present) and holds exactly the ok clips of its status file,
each with the members the shard format requires, and that the stats files and index.json
agree with what is on disk. Every problem is reported, one line each naming the file; the last
line is `verify: OK (...)` or `verify: FAILED — K problems`, and the exit code is 0, 1, or 2 for
a usage error. Leftovers of a run (`.tmp` files, a non-empty `.work/`, a held `.lock`) are
warnings, problems only with `--strict`. `--deep` also decodes every sample with the format's
decoder (every JPEG frame and mask), which costs about as much as reading the dataset for training.

Python: `verify_folder(path, manifest=None, deep=False) -> VerifyReport`.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import sys
import tarfile
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pipeline.inputs.manifest import Manifest, ManifestError, ManifestRow, load_manifest, sample_key
from pipeline.shards.files import file_sha256
from pipeline.shards.folder import INDEX, RUN
from pipeline.shards.format import (FORMAT_VERSION, KNOWN_FIELDS, OPTIONAL_FIELDS, REQUIRED_META,
                                   ShardFormatError, decode_sample)
from pipeline.shards.reader import SHARD_SUFFIX, TMP_SUFFIX

REQUIRED_FIELDS = tuple(f for f in KNOWN_FIELDS if f not in OPTIONAL_FIELDS)
STATS_SUFFIX = ".stats.json"
STATUS_SUFFIX = ".status.jsonl"
BLOCK = 512                  # tar block size; an archive ends with two zero blocks
CHUNK = 1 << 20              # bytes read at a time: hashing streams, never holding a whole tar
_LISTED = 10                 # clip ids named in one line before "… and N more"


@dataclass
class VerifyReport:
    """What verify found. `problems` fail the check; `warnings` only with --strict."""

    folder: str
    manifest: str | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    shards: int = 0
    samples: int = 0
    manifest_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def warn(self, where: str, what: str) -> None:
        self.warnings.append(f"{where}: {what}")

    def passed(self, strict: bool = False) -> bool:
        return self.ok and not (strict and self.warnings)

    def verdict(self, strict: bool = False) -> str:
        if self.passed(strict):
            return f"verify: OK ({self.shards} shards, {self.samples} samples, {self.manifest_rows} manifest rows)"
        count = len(self.problems) + (len(self.warnings) if strict else 0)
        return f"verify: FAILED — {count} problems"  # always plural: one fixed form for scripts

    def render(self, strict: bool = False) -> str:
        lines = [f"{self.folder} against {self.manifest or 'no manifest'}"]
        lines += [f"  problem  {p}" for p in self.problems]
        lines += [f"  warning  {w}" for w in self.warnings]
        return "\n".join(lines + [self.verdict(strict)])


@dataclass
class Shard:
    """One committed shard (it has a stats file) as read back: its stats and status rows."""

    name: str
    stats: dict[str, Any]
    rows: list[dict[str, Any]]
    has_status: bool = True  # False: no status file (reported once; its rows are not compared)

    @property
    def partition(self) -> str:
        return self.name.rsplit("-", 1)[0]


# --- helpers ---------------------------------------------------------------------------------
def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" … and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def _read_json(path: Path, report: VerifyReport, what: str = "") -> Any | None:
    """The parsed file, or None after reporting why it cannot be read."""
    if not path.is_file():
        report.problem(path.name, f"missing{what}")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        report.problem(path.name, f"not valid JSON ({err})")
        return None


def _supported(version: Any) -> bool:
    return isinstance(version, int) and 1 <= version <= FORMAT_VERSION


# --- index, run, manifest --------------------------------------------------------------------
def check_index(folder: Path, report: VerifyReport) -> dict[str, Any] | None:
    """index.json present, parseable, of a format this toolkit reads; run.json beside it."""
    index = _read_json(folder / INDEX, report, ": is this a folder written by make preprocess?")
    if index is not None and not isinstance(index, dict):
        report.problem(INDEX, "not a JSON object")
        index = None
    if index is not None and not _supported(index.get("format_version")):
        report.problem(INDEX, f"format_version {index.get('format_version')!r}; "
                              f"this toolkit reads 1 to {FORMAT_VERSION}")
    _read_json(folder / RUN, report)
    return index


def manifest_path(index: dict[str, Any] | None, override: str | Path | None) -> Path | None:
    """The manifest to check against: --manifest, else the one the index names (relative: to the cwd)."""
    if override is not None:
        return Path(override)
    recorded = _recorded_manifest(index).get("path")
    return Path(recorded) if recorded else None


def _recorded_manifest(index: dict[str, Any] | None) -> dict[str, Any]:
    recorded = (index or {}).get("manifest")
    return recorded if isinstance(recorded, dict) else {}


def check_manifest(path: Path | None, index: dict[str, Any] | None, report: VerifyReport) -> Manifest | None:
    """Load the manifest and compare it with what the index recorded at preprocessing time."""
    if path is None:
        if index is not None:
            report.problem(INDEX, "names no manifest (manifest.path); pass --manifest")
        return None
    if not path.is_file():
        report.problem(str(path), f"manifest not found (relative paths are taken from {Path.cwd()}); "
                                  "pass --manifest")
        return None
    recorded = _recorded_manifest(index)
    digest = file_sha256(path)
    if recorded.get("sha256") and digest != recorded["sha256"]:
        report.problem(str(path), f"sha256 {digest[:16]}… differs from {recorded['sha256'][:16]}… in {INDEX}: "
                                  "the manifest changed since preprocessing")
    try:
        manifest = load_manifest(path)
    except ManifestError as err:
        report.problems.extend(f"{path}: {p}" for p in err.problems)
        return None
    if recorded.get("rows") is not None and recorded["rows"] != len(manifest):
        report.problem(str(path), f"{len(manifest)} rows, {INDEX} recorded {recorded['rows']}")
    report.manifest_rows = len(manifest)
    return manifest


def planned_shards(manifest: Manifest | None, index: dict[str, Any] | None) -> dict[str, str] | None:
    """clip id -> the shard the pipeline assigns it to (as preprocess plans it), when that is known."""
    shard_size = (index or {}).get("config", {}).get("shard_size")
    if manifest is None or not isinstance(shard_size, int) or shard_size < 1:
        return None
    from pipeline.run.stages import plan_shards

    return {row["clip_id"]: job.name for job in plan_shards(manifest, shard_size) for row in job.rows}


# --- which shard files exist -----------------------------------------------------------------
def _names(folder: Path, suffix: str) -> set[str]:
    return {p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}")}


def check_shard_files(folder: Path, index: dict[str, Any] | None, plan: dict[str, str] | None,
                      report: VerifyReport) -> list[str]:
    """Every shard has its tar, status and stats, and is the one the index and plan expect.
    Returns the names of the committed shards (those with a stats file)."""
    stats, tars, status = _names(folder, STATS_SUFFIX), _names(folder, SHARD_SUFFIX), _names(folder, STATUS_SUFFIX)
    listed = {s.get("name") for s in (index or {}).get("shards", [])}
    missing = set((index or {}).get("missing_shards", []))
    for name in sorted(stats - tars):
        report.problem(f"{name}{SHARD_SUFFIX}", f"missing ({name}{STATS_SUFFIX} says the shard is complete)")
    for name in sorted(stats - status):
        report.problem(f"{name}{STATUS_SUFFIX}", f"missing ({name}{STATS_SUFFIX} says the shard is complete)")
    for name in sorted((tars | status) - stats):
        report.problem(f"{name}{STATS_SUFFIX}", "missing: the shard was never committed (a run was killed?); "
                                                "rerun make preprocess to redo it")
    if index is not None:
        for name in sorted(listed - stats):
            report.problem(INDEX, f"lists shard {name}, which has no {STATS_SUFFIX}")
        for name in sorted(stats - listed):
            report.problem(f"{name}{STATS_SUFFIX}", f"not in {INDEX}'s shard list (index out of date)")
        for name in sorted(missing):
            report.problem(INDEX, f"shard {name} is in missing_shards: the run did not finish; "
                                  "rerun make preprocess to complete it")
    if plan is not None:
        expected = set(plan.values())
        for name in sorted(stats - expected):
            report.problem(f"{name}{STATS_SUFFIX}", "a shard the manifest does not plan "
                                                    "(different manifest or shard_size?)")
        for name in sorted(expected - stats - missing):
            report.problem(f"{name}{SHARD_SUFFIX}", f"planned from the manifest but absent, "
                                                    f"and not in {INDEX}'s missing_shards")
    return sorted(stats)


# --- one shard -------------------------------------------------------------------------------
def load_shard(folder: Path, name: str, report: VerifyReport) -> Shard | None:
    """A committed shard's stats and status rows, or None after reporting why they cannot be read."""
    stats = _read_json(folder / f"{name}{STATS_SUFFIX}", report)
    if not isinstance(stats, dict):
        return None
    status_file = folder / f"{name}{STATUS_SUFFIX}"
    if not status_file.is_file():
        return Shard(name, stats, [], has_status=False)  # reported by check_shard_files
    rows = []
    for number, line in enumerate(status_file.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except ValueError as err:
            report.problem(status_file.name, f"line {number} is not valid JSON ({err})")
    return Shard(name, stats, rows)


def check_stats(shard: Shard, report: VerifyReport) -> None:
    """The stats file describes this shard and agrees with its status rows."""
    where, stats = f"{shard.name}{STATS_SUFFIX}", shard.stats
    ok_rows = [r for r in shard.rows if r.get("status") == "ok"]
    failed_rows = [r for r in shard.rows if r.get("status") != "ok"]
    expected = {"name": shard.name, "partition": shard.partition}
    if shard.has_status:
        expected.update(rows=len(shard.rows), ok=len(ok_rows), failed=len(failed_rows),
                        classes=dict(Counter(r.get("label") for r in ok_rows)),
                        failures=dict(Counter(r.get("reason") for r in failed_rows)))
    for key, value in expected.items():
        if stats.get(key) != value:
            source = "the file name" if key in ("name", "partition") else f"{shard.name}{STATUS_SUFFIX}"
            report.problem(where, f"{key} {stats.get(key)!r}, but {source} gives {value!r}")
    if not _supported(stats.get("format_version")):
        report.problem(where, f"format_version {stats.get('format_version')!r}; "
                              f"this toolkit reads 1 to {FORMAT_VERSION}")
    for row in shard.rows:
        if row.get("partition") != shard.partition:
            report.problem(f"{shard.name}{STATUS_SUFFIX}", f"clip {row.get('clip_id')!r} has partition "
                                                           f"{row.get('partition')!r}, not {shard.partition!r}")


class _HashingReader:
    """A file read front to back, hashed and counted on the way: one pass checks content and checksum."""

    def __init__(self, file):
        self.file, self.digest, self.size = file, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.file.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo, keep: bool) -> bytes | None:
    """Read a member to its end (tarfile raises ReadError if the data stops short); keep it if asked."""
    member = tar.extractfile(info)
    if keep:
        return member.read()
    while member.read(CHUNK):
        pass
    return None


def check_sample(where: str, key: str, members: dict[str, bytes | None], partition: str, deep: bool,
                 report: VerifyReport) -> None:
    """One sample has the members the format requires and a meta.json that matches its key and shard."""
    missing = [f for f in REQUIRED_FIELDS if f not in members]
    if missing:
        report.problem(where, f"sample {key} lacks {', '.join(missing)}")
    if "meta.json" not in members:
        return
    try:
        meta = json.loads(members["meta.json"])
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as err:
        report.problem(where, f"sample {key}: meta.json does not parse ({err})")
        return
    lacking = [k for k in REQUIRED_META if k not in meta]
    if lacking:
        report.problem(where, f"sample {key}: meta.json lacks {', '.join(lacking)}")
    if "clip_id" in meta and sample_key(str(meta["clip_id"])) != key:
        report.problem(where, f"sample {key}: meta.json clip_id {meta['clip_id']!r} does not give this key")
    if "partition" in meta and meta["partition"] != partition:
        report.problem(where, f"sample {key}: meta.json partition {meta['partition']!r}, shard is {partition!r}")
    if not _supported(meta.get("format_version")):
        report.problem(where, f"sample {key}: format_version {meta.get('format_version')!r}")
    if deep and not missing:
        decode_fully(where, key, members, report)


def decode_fully(where: str, key: str, members: dict[str, bytes | None], report: VerifyReport) -> None:
    """--deep: the format's decoder (array shapes against the frame count), every JPEG and the masks."""
    try:
        clip = decode_sample({"__key__": key, **members})
        frames = len(clip.frames())
        masks = clip.masks()
    except ShardFormatError as err:  # names the sample and the field
        report.problem(where, str(err))
        return
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as err:
        report.problem(where, f"sample {key}: masks.npz unreadable ({type(err).__name__}: {err})")
        return
    counts = {"frames decoded": frames, "meta.json num_frames": clip.meta.get("num_frames")}
    if masks is not None:
        counts["masks.npz frames"] = len(masks)
    for what, count in counts.items():
        if count != clip.num_frames:
            report.problem(where, f"sample {key}: {what} {count}, frames_offsets.npy gives {clip.num_frames}")


def _samples(tar: tarfile.TarFile, deep: bool) -> Iterator[tuple[str, dict[str, bytes | None]]]:
    """Group a streamed tar's members into samples by key (as the shard reader does), reading every byte."""
    key, members = None, {}
    for info in tar:
        name, _, field_name = info.name.partition(".")
        if key is not None and name != key:
            yield key, members
            members = {}
        key = name
        members[field_name] = _read_member(tar, info, keep=deep or field_name == "meta.json")
    if key is not None:
        yield key, members


def read_tar(path: Path, partition: str, deep: bool, report: VerifyReport) -> tuple[list[str], int, str]:
    """Stream the tar once, checking each sample; returns (sample keys in order, bytes, sha256)."""
    keys: list[str] = []
    with open(path, "rb") as f:
        reader = _HashingReader(f)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:
                for key, members in _samples(tar, deep):
                    if key in keys:
                        report.problem(path.name, f"sample {key} appears twice")
                    keys.append(key)
                    check_sample(path.name, key, members, partition, deep, report)
                end = tar.offset  # just past the last member's data
            if not _ends_archive(f, end):
                report.problem(path.name, f"truncated: no end-of-archive marker after {len(keys)} samples")
        except (tarfile.TarError, EOFError) as err:
            report.problem(path.name, f"unreadable after {len(keys)} whole samples: {err} (truncated or corrupt)")
        f.seek(reader.size)
        reader.drain()
    return keys, reader.size, reader.digest.hexdigest()


def _ends_archive(f, end: int) -> bool:
    """Two zero blocks follow the last member: a tar cut at a member boundary reads cleanly without them."""
    f.seek(end)
    tail = f.read(2 * BLOCK)
    return len(tail) == 2 * BLOCK and not any(tail)


def check_tar(folder: Path, shard: Shard, deep: bool, report: VerifyReport) -> int:
    """The tar matches its stats (size, checksum, count) and holds exactly the shard's ok clips.
    Returns the number of samples read."""
    path = folder / f"{shard.name}{SHARD_SUFFIX}"
    if not path.is_file():
        return 0  # reported by check_shard_files
    keys, size, digest = read_tar(path, shard.partition, deep, report)
    stats = shard.stats
    if size != stats.get("bytes"):
        report.problem(path.name, f"{size} bytes, {shard.name}{STATS_SUFFIX} says {stats.get('bytes')}")
    if digest != stats.get("sha256"):
        report.problem(path.name, f"sha256 {digest[:16]}… differs from {str(stats.get('sha256'))[:16]}… "
                                  f"in {shard.name}{STATS_SUFFIX}")
    if len(keys) != stats.get("ok"):
        report.problem(path.name, f"{len(keys)} samples, {shard.name}{STATS_SUFFIX} says ok {stats.get('ok')}")
    if shard.has_status:
        check_tar_keys(path, keys, shard, report)
    return len(keys)


def check_tar_keys(path: Path, keys: list[str], shard: Shard, report: VerifyReport) -> None:
    """The tar's samples are exactly the clips its status file marks ok."""
    ok_keys = [sample_key(str(r.get("clip_id"))) for r in shard.rows if r.get("status") == "ok"]
    in_tar, in_status = set(keys), set(ok_keys)
    absent = [k for k in ok_keys if k not in in_tar]
    extra = [k for k in keys if k not in in_status]
    if absent:
        report.problem(path.name, f"lacks ok clips of {shard.name}{STATUS_SUFFIX}: {_listing(absent)}")
    if extra:
        report.problem(path.name, f"holds samples that are not ok in {shard.name}{STATUS_SUFFIX}: "
                                  f"{_listing(extra)}")


# --- across shards ---------------------------------------------------------------------------
def check_coverage(manifest: Manifest, shards: list[Shard], plan: dict[str, str] | None,
                   report: VerifyReport) -> None:
    """Every manifest row in exactly one status row, in its planned shard; no status row of another clip."""
    placed: dict[str, list[tuple[str, dict]]] = defaultdict(list)  # clip id -> [(shard, status row)]
    for shard in shards:
        for row in shard.rows:
            placed[row.get("clip_id")].append((shard.name, row))
    unplaced: dict[str, list[str]] = defaultdict(list)  # planned shard -> clips in no status file
    for row in manifest.rows:
        places = placed.get(row.clip_id, [])
        if not places:
            unplaced[plan.get(row.clip_id, "") if plan else ""].append(f"{row.clip_id} (line {row.line})")
        elif len(places) > 1:
            names = [name for name, _ in places]
            report.problem(", ".join(f"{n}{STATUS_SUFFIX}" for n in sorted(set(names))),
                           f"clip {row.clip_id} has {len(places)} status rows (shards {', '.join(names)}); "
                           "it must have one")
        else:
            check_placement(row, *places[0], plan, report)
    for planned, clips in sorted(unplaced.items()):
        where = f" (planned for shard {planned})" if planned else ""
        report.problem(str(manifest.source), f"{len(clips)} row{'s' if len(clips) > 1 else ''} "
                                             f"in no status file{where}: {_listing(clips)}")
    known = {row.clip_id for row in manifest.rows}
    for shard in shards:
        strangers = [str(r.get("clip_id")) for r in shard.rows if r.get("clip_id") not in known]
        if strangers:
            report.problem(f"{shard.name}{STATUS_SUFFIX}", f"clips not in the manifest: {_listing(strangers)}")


def check_placement(row: ManifestRow, shard: str, status: dict, plan: dict[str, str] | None,
                    report: VerifyReport) -> None:
    """A clip's one status row is in the shard planned for it and agrees with its manifest row."""
    where = f"{shard}{STATUS_SUFFIX}"
    if plan and plan.get(row.clip_id) != shard:
        report.problem(where, f"clip {row.clip_id} belongs in shard {plan.get(row.clip_id)}")
    recorded = (status.get("label"), status.get("partition"))
    if recorded != (row.label, row.partition):
        report.problem(where, f"clip {row.clip_id} is {'/'.join(map(str, recorded))}, "
                              f"the manifest says {row.label}/{row.partition}")


def check_index_totals(index: dict[str, Any], shards: list[Shard], report: VerifyReport) -> None:
    """index.json's shard entries and totals are the sums of the stats files."""
    stats_of = {s.name: s.stats for s in shards}
    for entry in index.get("shards", []):
        stats = stats_of.get(entry.get("name"))
        for key in ("partition", "ok", "failed", "bytes", "sha256"):
            if stats is not None and entry.get(key) != stats.get(key):
                report.problem(INDEX, f"shard {entry['name']}: {key} {entry.get(key)!r}, "
                                      f"{entry['name']}{STATS_SUFFIX} says {stats.get(key)!r}")
    counts: dict[str, Counter] = defaultdict(Counter)
    failures: Counter = Counter()
    for stats in stats_of.values():
        counts[stats.get("partition")].update(stats.get("classes", {}))
        failures.update(stats.get("failures", {}))
    totals = {
        "ok": sum(s.get("ok", 0) for s in stats_of.values()),
        "failed": sum(s.get("failed", 0) for s in stats_of.values()),
        "bytes": sum(s.get("bytes", 0) for s in stats_of.values()),
        "failures": dict(failures),
    }
    for partition in index.get("partitions", []):
        totals[f"samples.{partition}"] = sum(counts[partition].values())
        for label in index.get("classes", []):
            totals[f"counts.{partition}.{label}"] = counts[partition].get(label, 0)
    for key, total in totals.items():
        recorded = _lookup(index, key)
        if recorded != total:
            report.problem(INDEX, f"{key} {recorded!r}, the stats files sum to {total!r}")


def _lookup(data: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


# --- leftovers -------------------------------------------------------------------------------
def check_leftovers(folder: Path, report: VerifyReport) -> None:
    """Traces of a run in progress or killed: warnings, since a rerun cleans them up."""
    for tmp in sorted(folder.glob(f"*{TMP_SUFFIX}")):
        report.warn(tmp.name, "temporary file left by a run (in progress or killed)")
    work = folder / ".work"
    if work.is_dir() and any(work.iterdir()):
        report.warn(".work/", "not empty: a run is in progress or was killed")
    if _lock_held(folder / ".lock"):
        report.warn(".lock", "held: a run is writing into this folder now; verify again when it ends")


def _lock_held(lock: Path) -> bool:
    if not lock.is_file():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


# --- the whole folder ------------------------------------------------------------------------
def verify_folder(path: str | Path, manifest: str | Path | None = None, deep: bool = False) -> VerifyReport:
    """Check a dataset folder against its manifest (the index's, or `manifest`), index and stats."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    report = VerifyReport(folder=str(folder))
    index = check_index(folder, report)
    source = manifest_path(index, manifest)
    report.manifest = None if source is None else str(source)
    loaded = check_manifest(source, index, report)
    plan = planned_shards(loaded, index)
    shards = []
    for name in check_shard_files(folder, index, plan, report):
        shard = load_shard(folder, name, report)
        if shard is not None:
            check_stats(shard, report)
            report.samples += check_tar(folder, shard, deep, report)
            shards.append(shard)
    report.shards = len(shards)
    if loaded is not None:
        check_coverage(loaded, shards, plan, report)
    if index is not None:
        check_index_totals(index, shards, report)
    check_leftovers(folder, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.verify", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a dataset folder written by make preprocess")
    parser.add_argument("--manifest", type=Path, help="check against this manifest file instead of the index's")
    parser.add_argument("--deep", action="store_true", help="also decode every sample (frames, masks, arrays)")
    parser.add_argument("--strict", action="store_true", help="warnings (leftovers of a run) fail too")
    args = parser.parse_args(argv)
    try:
        report = verify_folder(args.folder, args.manifest, args.deep)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report.render(args.strict))
    return 0 if report.passed(args.strict) else 1


if __name__ == "__main__":
    sys.exit(main())
