"""The dataset folder the pipeline writes: shards, their records, the lock and the index.

    {partition}-{index:06d}.tar           the samples (format: docs/shard-format.md)
    {partition}-{index:06d}.status.jsonl  every manifest row assigned to the shard, ok or failed + reason
    {partition}-{index:06d}.stats.json    counts, bytes, checksum; written LAST: it marks the shard complete
    index.json                            dataset-level summary, rebuilt from the stats files after each run
    run.json                              the configuration of the run that owns this folder
    .lock                                 held (flock) while a run writes here
    .work/<run id>/                       working tars of the current run; removed when it ends

Every file is written under a temporary name and renamed, so a reader never sees half a file,
and a run killed at any moment leaves only whole shards with their stats, or nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterator

from pipeline.shards.format import FORMAT_VERSION
from pipeline.shards.reader import SHARD_SUFFIX
from pipeline.shards.files import file_sha256, write_atomic

INDEX = "index.json"
RUN = "run.json"
# Settings added to run.json after folders were made with it: the value they had before, so a
# folder made by an older toolkit still resumes when the new setting keeps that value.
ADDED_SETTINGS = {"crop": "detect"}


class FolderBusyError(RuntimeError):
    """Another run is writing into the same output folder."""


class OutputFolder:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock_file = None

    # --- ownership -------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the folder for this run; refuse if another run holds it (released when we exit or die)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip() or "another process"
            self._lock_file.close()
            self._lock_file = None
            raise FolderBusyError(f"{self.path} is being written by {holder}; wait for that run to finish "
                                  "or choose another OUT=") from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"pid {os.getpid()} on {os.uname().nodename} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        self._lock_file.flush()

    def unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def recorded_run(self) -> dict[str, Any] | None:
        """The configuration recorded in run.json by the last run (None in a new folder)."""
        run_file = self.path / RUN
        return json.loads(run_file.read_text()) if run_file.is_file() else None

    def check_run_config(self, config: dict[str, Any], overwrite: bool) -> None:
        """Resume only a run with the same configuration; --overwrite starts over."""
        run_file = self.path / RUN
        if overwrite:
            self.clear()
        elif run_file.exists():
            previous = {**ADDED_SETTINGS, **json.loads(run_file.read_text())}
            differs = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
            if differs:
                raise RuntimeError(f"{self.path} holds shards made with a different configuration "
                                   f"({', '.join(differs)}); rerun with --overwrite (OVERWRITE=1) to start over, "
                                   "or choose another OUT=")
            # One folder, one shard format: readers that type columns from the first samples
            # (Hugging Face datasets) cannot read a mix.
            older = sorted({str(s.get("format_version")) for s in self.all_stats()} - {str(FORMAT_VERSION)})
            if older:
                raise RuntimeError(f"{self.path} holds shards in format version {', '.join(older)} and this "
                                   f"toolkit writes version {FORMAT_VERSION}; rerun with --overwrite (OVERWRITE=1) "
                                   "to start over, or choose another OUT=")
        write_atomic(run_file, json.dumps(config, indent=1, sort_keys=True) + "\n")

    def clear(self) -> None:
        for item in self.path.iterdir():
            if item.name == ".lock":
                continue
            shutil.rmtree(item) if item.is_dir() else item.unlink()

    def work_dir(self, run_id: str) -> Path:
        """A fresh working folder for this run; older runs' leftovers are removed."""
        root = self.path / ".work"
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)
        path = root / run_id
        path.mkdir(parents=True)
        return path

    def finish_work(self) -> None:
        """Remove working tars once the run has committed what it finished."""
        shutil.rmtree(self.path / ".work", ignore_errors=True)

    # --- shards ----------------------------------------------------------------------------
    def stats_path(self, name: str) -> Path:
        return self.path / f"{name}.stats.json"

    def complete(self) -> set[str]:
        """Names of shards whose stats file exists."""
        return {p.name[: -len(".stats.json")] for p in self.path.glob("*.stats.json")}

    def commit(self, name: str, partition: str, rows: list[dict], status: dict[str, dict], work_tar: Path,
               seconds: dict[str, float]) -> dict[str, Any]:
        """Move a finished shard into place: tar, then status table, then stats (the commit marker)."""
        final = self.path / f"{name}{SHARD_SUFFIX}"
        os.replace(work_tar, final)
        records = []
        for row in rows:
            state = status.get(row["clip_id"], {"status": "failed", "reason": "not_processed",
                                                "message": "no stage reported on this clip"})
            records.append({"clip_id": row["clip_id"], "label": row["label"], "partition": row["partition"],
                            "path": row["path"], **state})
        write_atomic(self.path / f"{name}.status.jsonl",
                     "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        ok = [r for r in records if r["status"] == "ok"]
        stats = {
            "name": name, "partition": partition, "format_version": FORMAT_VERSION,
            "rows": len(records), "ok": len(ok), "failed": len(records) - len(ok),
            "failures": dict(Counter(r["reason"] for r in records if r["status"] != "ok")),
            "classes": dict(Counter(r["label"] for r in ok)),
            "bytes": final.stat().st_size, "sha256": file_sha256(final),
            "seconds": seconds, "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        write_atomic(self.stats_path(name), json.dumps(stats, indent=1, sort_keys=True) + "\n")
        return stats

    def status_rows(self, name: str) -> list[dict[str, Any]]:
        """The status table of one shard."""
        return [json.loads(line) for line in (self.path / f"{name}.status.jsonl").read_text().splitlines()]

    def all_stats(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.path.glob("*.stats.json")):
            yield json.loads(path.read_text())

    # --- index -----------------------------------------------------------------------------
    def write_index(self, dataset: str, classes: list[str], partitions: list[str], manifest: dict,
                    config: dict, models: dict, planned: list[str], crashed: list[str] = ()) -> dict[str, Any]:
        """Summarise every complete shard into index.json (the trainer's epoch sizes come from here)."""
        counts: dict[str, Counter] = defaultdict(Counter)
        failures: Counter = Counter()
        shards = []
        for stats in self.all_stats():
            counts[stats["partition"]].update(stats["classes"])
            failures.update(stats["failures"])
            shards.append({k: stats[k] for k in ("name", "partition", "ok", "failed", "bytes", "sha256")})
        index = {
            "format_version": FORMAT_VERSION, "dataset": dataset, "classes": classes, "partitions": partitions,
            "manifest": manifest, "config": config, "models": models,
            "counts": {p: {c: counts[p].get(c, 0) for c in classes} for p in partitions},
            "samples": {p: sum(counts[p].values()) for p in partitions},
            "ok": sum(s["ok"] for s in shards), "failed": sum(s["failed"] for s in shards),
            "failures": dict(failures.most_common()),
            "shards": shards, "complete": len(shards) == len(planned),
            "missing_shards": sorted(set(planned) - {s["name"] for s in shards}),
            "crashed_shards": sorted(crashed),  # this run's shards whose worker died on every attempt
            "bytes": sum(s["bytes"] for s in shards), "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        write_atomic(self.path / INDEX, json.dumps(index, indent=1) + "\n")
        return index
