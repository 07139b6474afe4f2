"""Ray workers that die: a shard whose worker is killed is retried whole; one that kills every
worker is reported, never retried forever and never silently dropped."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from pipeline.inputs.manifest import load_manifest
from pipeline.run.ray_runner import SHARD_ATTEMPTS, init_ray, run_stages, shutdown_ray
from pipeline.shards.reader import ShardReader
from pipeline.run.stages import ShardJob, Stage
from pipeline.verify import verify_folder

ROOT = Path(__file__).resolve().parent.parent


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def busy_stage_workers(pid: int) -> list[int]:
    """Ray actor processes of the run started as `pid` that are executing a shard right now."""
    busy = []
    for child in descendants(pid):
        try:
            title = (Path("/proc") / str(child) / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "MapWorker(MapBatches(_StageActor))" in title and ".submit" in title:
            busy.append(child)
    return busy


def test_a_worker_killed_mid_shard_retries_the_shard_without_duplicates(sample_data, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pipeline.preprocess", "sample", "--data-root", str(sample_data),
               "--out", str(out), "--workers", "1", "--shard-size", "4", "--no-progress"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed, deadline = None, time.time() + 180
    while killed is None and time.time() < deadline and proc.poll() is None:
        in_progress = list((out / ".work").glob("*/*.tmp")) if (out / ".work").is_dir() else []
        workers = busy_stage_workers(proc.pid) if in_progress else []
        if workers:  # a working tar is half written: kill the worker writing it
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    output, _ = proc.communicate(timeout=300)
    assert killed is not None, "no busy worker was found to kill"
    assert proc.returncode == 0, output[-3000:]
    manifest = load_manifest("sample", sample_data)
    rows = [r for path in out.glob("*.status.jsonl") for r in map(json.loads, path.read_text().splitlines())]
    assert Counter(r["clip_id"] for r in rows) == Counter(r.clip_id for r in manifest.rows)
    keys = [clip.key for clip in ShardReader(out)]
    assert len(keys) == len(set(keys)) == sum(r["status"] == "ok" for r in rows)
    report = verify_folder(out)
    assert report.ok, report.problems


def test_a_shard_that_kills_every_worker_is_given_up_after_a_bounded_number_of_attempts():
    # Defined here so that Ray ships the class by value (the tests folder is no package).
    class KillsItsWorker(Stage):
        """Dies (SIGKILL, like a segfault or the out-of-memory killer) on the shard named "poison"."""

        name = "kills_its_worker"

        def setup(self) -> None:
            pass

        def process(self, job: ShardJob) -> ShardJob:
            if job.name == "poison":
                os.kill(os.getpid(), signal.SIGKILL)
            job.status = {row["clip_id"]: {"status": "ok"} for row in job.rows}
            return job

    assert SHARD_ATTEMPTS == 3
    jobs = [ShardJob(name=name, partition="fold1", rows=[{"clip_id": name}]) for name in ("a", "poison", "b")]
    init_ray(num_cpus=2)
    try:
        started = time.time()
        finished = sorted(job.name for job in run_stages(jobs, [(KillsItsWorker(), 1)]))
    finally:
        shutdown_ray()
    assert finished == ["a", "b"]
    assert time.time() - started < 240
