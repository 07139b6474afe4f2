"""Shared helpers of the benchmark scripts: machine facts, JSON results, terminal tables, CPU load.

Imported by the scripts in bench/ (each puts its own folder on sys.path), never by the toolkit.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from pipeline.shards.files import write_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_WORK = Path(os.environ.get("BENCH_WORK_DIR", "/tmp/dfer-bench"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> dict[str, Any]:
    """The checkout's commit (and whether tracked files differ from it); GIT_COMMIT where there is no .git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"commit": commit, "modified_tracked_files": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": os.environ.get("GIT_COMMIT"), "modified_tracked_files": None}


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare figures between machines, and the commit they were measured at
    (docs quote a figure with both: tests/test_doc_figures.py)."""
    info: dict[str, Any] = {
        **git_commit(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"], info["gpu"] = None, None
    for module in ("cv2", "av", "ray", "webdataset", "dlib"):
        try:
            info[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            pass
    return info


def write_json(path: Path, report: dict[str, Any]) -> Path:
    """Write `report` (with machine info added when missing) atomically as indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report.setdefault("machine", machine_info())
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_atomic(path, json.dumps(report, indent=1, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:
        pass
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10 ** -digits:
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 2) -> str:
    """A plain-text table, right-aligned numbers, for the terminal."""
    cells = [[fmt(v, digits) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat (None where there is none)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)   # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


class LoadMonitor:
    """Share of the whole machine's CPU time that was busy over an interval (all processes, ours
    included): next to what the benchmark itself should use, a hint of how much another workload
    competed with it. None where /proc/stat is missing."""

    busy_share: float | None = None

    def __enter__(self) -> "LoadMonitor":
        self.start = _cpu_ticks()
        return self

    def __exit__(self, *exc) -> None:
        end = _cpu_ticks()
        if self.start and end and end[1] > self.start[1]:
            self.busy_share = round((end[0] - self.start[0]) / (end[1] - self.start[1]), 3)


def rss_mib() -> float | None:
    """Resident memory of this process now, MiB (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
