"""`make scale DATASET=ferv39k [CLIPS=N]`: how the pipeline's cost grows with the work, on a stand-in
of the dataset's real shape, and a crash half way through the largest run.

    python bench/scale.py --dataset ferv39k [--sizes 1000 4000 all] [--no-kill] [--no-train] [--no-orchestration]
        [--train-size N] [--workers N] [--work-dir data] [--out bench/results/scale-ferv39k.json] [--reuse]

1. The stand-in (pipeline/sample/standin.py) is built, or brought up to date, at each size: the
   dataset's face-crop folders with its real clip ids and frame counts, a subset stratified by
   partition and class (`all`: every clip), its manifest as `<stand-in>/manifest-<size>.csv`.
2. At each size, `python -m pipeline.preprocess <manifest> --profile cpu` runs as `make preprocess`
   runs it, into a fresh folder, its output going to a log file (no terminal: the progress
   report's line form). Every 0.5 s this script reads /proc: the peak resident memory (VmHWM,
   which the kernel keeps, so no peak between two looks is missed) and private memory (RssAnon)
   of the driver, of every face-stage actor (a Ray worker whose title names `_StageActor`) and of
   Ray's own processes; and the time each shard's stats file (its commit) appears. Recorded: wall
   time, clips/s and frames/s, time per 1,000 clips over the whole run and in the steady state
   (from the first commit to the last, which leaves out the start-up every run pays once), the
   face stage's seconds per step and per frame (summed from the shards' stats), shards and bytes,
   the log's line count, then `python -m pipeline.verify` and its time.
3. At the largest size, the same command again into a fresh folder, killed with SIGKILL (its whole
   process group, and any process of its tree outside it) once half its shards are committed,
   then rerun as it was. Recorded: shards committed and in flight at the kill (working tars in
   `.work/`, and the samples they held), what the rerun did, whether any committed shard was
   written again, every manifest row in exactly one status row, and verify.
4. The pipeline's orchestration without face work (bench/probes/orchestration.py: every clip a
   recorded failure at once, every tar empty) over the smallest size's manifest and over the
   dataset's whole manifest (38,935 rows and 609 shards for FERV39k): the driver's memory, the
   time per shard, the log's lines and verify, at full size, for what grows with clips and shards
   rather than frames.
5. One training epoch of `MODEL=tiny` (`python -m trainer.train --set epochs=1`, workers = CPUs)
   over the largest size's shards (training partitions, then validation and the test fold):
   the trainer's clips/s and data-wait share from its log.jsonl, and its peak memory.

The machine's load (load average before and after each run, and the share of all CPUs busy) is
recorded with every figure: on a shared machine another workload slows a run by up to 3×, so
ratios between sizes are only as good as the load was steady. Results:
bench/results/scale-<dataset>.json; docs/benchmarks.md explains them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

from common import RESULTS, ROOT, LoadMonitor, log, machine_info, table, write_json

SIZES = ("1000", "4000", "all")
POLL_S = 0.5
ACTOR_TITLE = "_StageActor"   # Ray names an actor's process after its class: ray::MapWorker(MapBatches(_StageActor))
# Targets of issue 33.
LINEAR_X, DRIVER_MAX_GIB, DRIVER_X, WORKER_X = 1.15, 1.5, 1.3, 1.1
PROGRESS_SLACK = 10   # log lines allowed beyond one per shard (the run's header and summary)


# ------------------------------------------------------------------------------ /proc
def _status(pid: int) -> dict[str, int]:
    """VmHWM, VmRSS and RssAnon of a process, KiB ({} when it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon"):
                out[key] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * TICK_S
    except (OSError, ValueError, IndexError):
        return 0.0


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """Every process below `root` (by parent pid)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kind(title: str) -> str:
    if ACTOR_TITLE in title:
        return "actor"
    if "raylet" in title or "gcs_server" in title:
        return "ray"
    if title.startswith("ray::"):
        return "ray_worker"   # an idle Ray worker, or the attempt ledger
    return "other"


class TreeMemory:
    """Peak memory and CPU time of a process and its tree, by role, from repeated looks at /proc
    (the CPU seconds a process used after the last look before it ended are not counted)."""

    def __init__(self, root: int):
        self.root = root
        self.peak: dict[int, dict] = {}   # pid -> {"kind", "title", "hwm_kib", "anon_kib"}

    def sample(self) -> None:
        for pid in [self.root, *descendants(self.root)]:
            status = _status(pid)
            if not status:
                continue
            entry = self.peak.setdefault(pid, {"kind": "driver" if pid == self.root else "other", "title": "",
                                               "hwm_kib": 0, "anon_kib": 0, "cpu_s": 0.0})
            entry["cpu_s"] = max(entry["cpu_s"], _cpu_s(pid))
            if pid != self.root and entry["kind"] != "actor":
                title = _title(pid)
                entry["kind"], entry["title"] = _kind(title), title[:80]
            entry["hwm_kib"] = max(entry["hwm_kib"], status.get("VmHWM", 0))
            entry["anon_kib"] = max(entry["anon_kib"], status.get("RssAnon", 0))

    def summary(self) -> dict:
        def mib(kib: int) -> float:
            return round(kib / 1024, 1)

        driver = self.peak.get(self.root, {"hwm_kib": 0, "anon_kib": 0})
        actors = [p for p in self.peak.values() if p["kind"] == "actor"]
        ray = [p for p in self.peak.values() if p["kind"] == "ray"]
        return {
            "driver_peak_rss_mib": mib(driver["hwm_kib"]), "driver_peak_anon_mib": mib(driver["anon_kib"]),
            "actor_peak_rss_mib": [mib(p["hwm_kib"]) for p in actors],
            "actor_peak_anon_mib": [mib(p["anon_kib"]) for p in actors],
            "worker_peak_rss_mib": mib(max((p["hwm_kib"] for p in actors), default=0)),
            "ray_processes_peak_rss_mib": {p["title"].split()[0].rsplit("/", 1)[-1]: mib(p["hwm_kib"]) for p in ray},
            "cpu_s": {kind: round(sum(p["cpu_s"] for p in self.peak.values() if p["kind"] == kind), 1)
                      for kind in ("driver", "actor", "ray", "ray_worker", "other")},
            "cpu_s_by_process": self._by_title(),
        }

    def _by_title(self, top: int = 8) -> dict[str, float]:
        """CPU seconds of the busiest kinds of process, by title (its first words)."""
        totals: Counter = Counter()
        for pid, p in self.peak.items():
            words = (p["title"] or "driver").split()
            name = words[0].rsplit("/", 1)[-1] if words else "?"
            if name.startswith("python") and len(words) > 1:
                name = " ".join(w.rsplit("/", 1)[-1] for w in words[1:3])
            totals[name[:60]] += p["cpu_s"]
        return {name: round(cpu, 1) for name, cpu in totals.most_common(top)}


# ------------------------------------------------------------------------------ one run
def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the run's process group and any process of its tree that left the group; wait until
    all are gone."""
    tree = descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() and _status(pid) for pid in tree):
        time.sleep(0.2)


def run_preprocess(command: list[str], out: Path, log_path: Path, planned: int, env: dict,
                   kill_at: int | None = None) -> dict:
    """Run the pipeline (stdout and stderr to `log_path`), sampling memory and commits; with `kill_at`,
    SIGKILL its tree once that many shards are committed."""
    commits: dict[str, float] = {}
    before = [round(x, 2) for x in os.getloadavg()]
    with LoadMonitor() as load, open(log_path, "w") as log_file:
        started = time.monotonic()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        memory = TreeMemory(proc.pid)
        killed = None
        while proc.poll() is None:
            memory.sample()
            now = time.monotonic() - started
            for path in out.glob("*.stats.json") if out.is_dir() else ():
                commits.setdefault(path.name[: -len(".stats.json")], round(now, 2))
            if kill_at is not None and len(commits) >= kill_at:
                kill_tree(proc)   # then look: the folder as the rerun will find it
                killed = kill_state(out)
                killed["at_s"] = round(now, 1)
                break
            time.sleep(POLL_S)
        wall = time.monotonic() - started
    for path in out.glob("*.stats.json") if killed is None and out.is_dir() else ():
        commits.setdefault(path.name[: -len(".stats.json")], round(wall, 2))
    text = log_path.read_text(errors="replace")
    return {"exit_code": proc.returncode, "wall_s": round(wall, 1), "killed": killed, "commits": commits,
            "memory": memory.summary(), "load_average_before": before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()], "machine_busy": load.busy_share,
            "log_lines": len(text.splitlines()), "progress_lines": sum(": " in l and " clips (" in l
                                                                        for l in text.splitlines()),
            "log_tail": text.splitlines()[-6:], "planned_shards": planned}


def kill_state(out: Path) -> dict:
    """What a killed run left: committed shards (with their tars' identity, to show the rerun leaves
    them alone) and shards in flight (working tars in .work/, whole or cut short)."""
    committed = {}
    for path in out.glob("*.stats.json"):
        name = path.name[: -len(".stats.json")]
        st = (out / f"{name}.tar").stat()
        committed[name] = [st.st_ino, st.st_mtime_ns, st.st_size]
    in_flight: dict[str, int] = {}
    finished: list[str] = []   # its working tar whole: the stage was done, the driver had not committed it
    for path in sorted((out / ".work").glob("*/*")) if (out / ".work").is_dir() else ():
        name = path.name.split(".", 1)[0]
        if name not in committed:
            in_flight[name] = max(in_flight.get(name, 0), _samples_in(path))
            if not path.name.endswith(".tmp"):
                finished.append(name)
    return {"committed": committed, "in_flight": in_flight, "finished_not_committed": sorted(set(finished))}


def _samples_in(path: Path) -> int:
    """Samples whole in a working tar, which may be cut short (a meta.json member per sample)."""
    count = 0
    try:
        with tarfile.open(path, "r|") as tar:
            for info in tar:
                count += info.name.endswith(".meta.json")
    except (tarfile.TarError, OSError, EOFError):
        pass
    return count


# ------------------------------------------------------------------------------ figures
def shard_figures(out: Path) -> dict:
    """Shards, bytes and the face stage's seconds per step, from index.json and the stats files."""
    index = json.loads((out / "index.json").read_text())
    seconds: Counter = Counter()
    for path in out.glob("*.stats.json"):
        seconds.update(json.loads(path.read_text()).get("seconds", {}))
    frames = seconds.get("count.frames_kept", 0)
    steps = {k.split(".", 1)[1]: round(v, 2) for k, v in seconds.items() if k.startswith("face.")}
    return {"shards": len(index["shards"]), "bytes": index["bytes"], "ok": index["ok"], "failed": index["failed"],
            "complete": index["complete"], "frames_kept": frames,
            "stage_seconds": {"face": round(seconds.get("face", 0), 2), "describe": round(seconds.get("describe", 0), 2),
                              **steps},
            "ms_per_frame": {k: round(1000 * v / max(frames, 1), 3)
                             for k, v in {"face": seconds.get("face", 0), "describe": seconds.get("describe", 0),
                                          **{s: seconds[f"face.{s}"] for s in steps}}.items()}}


def steady_state(commits: dict[str, float], clips_of: dict[str, int]) -> dict:
    """Clips/s from the first commit to the last: the clips of every shard after the first, over that time."""
    order = sorted(commits.items(), key=lambda kv: kv[1])
    if len(order) < 3:
        return {}
    span = order[-1][1] - order[0][1]
    clips = sum(clips_of.get(name, 0) for name, _ in order[1:])
    return {"first_commit_s": order[0][1], "last_commit_s": order[-1][1], "clips": clips,
            "clips_per_s": round(clips / max(span, 1e-9), 3),
            "s_per_1000_clips": round(1000 * span / max(clips, 1), 1)}


def status_coverage(out: Path, manifest: Path) -> dict:
    """Every manifest row in exactly one status row."""
    sys.path.insert(0, str(ROOT))
    from pipeline.inputs.manifest import load_manifest

    rows = Counter()
    for path in out.glob("*.status.jsonl"):
        rows.update(json.loads(line)["clip_id"] for line in path.read_text().splitlines())
    expected = Counter(r.clip_id for r in load_manifest(manifest).rows)
    return {"rows": sum(expected.values()), "status_rows": sum(rows.values()),
            "missing": sum((expected - rows).values()), "duplicated": sum(n - 1 for n in rows.values() if n > 1),
            "strangers": sum((rows - expected).values()), "exactly_once": rows == expected}


def run_verify(out: Path, env: dict) -> dict:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipeline.verify", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    return {"seconds": round(time.monotonic() - started, 1), "exit_code": done.returncode,
            "verdict": (done.stdout.strip().splitlines() or [""])[-1]}


def run_training(dataset: str, shards: Path, runs: Path, workers: int, env: dict) -> dict:
    """One epoch of MODEL=tiny on the shards; the trainer's own clips/s and data-wait share."""
    if runs.exists():
        shutil.rmtree(runs)
    command = [sys.executable, "-m", "trainer.train", "--dataset", dataset, "--model", "tiny", "--fold", "1",
               "--shards", str(shards), "--set", "epochs=1", "--set", f"workers={workers}",
               "--set", f"runs_dir={runs}"]
    log_path = runs.parent / f"{runs.name}.log"
    before = [round(x, 2) for x in os.getloadavg()]
    with LoadMonitor() as load, open(log_path, "w") as log_file:
        started = time.monotonic()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        peak, loader_peak, cpu = 0, 0, {}
        while proc.poll() is None:
            peak = max(peak, _status(proc.pid).get("VmHWM", 0))
            loaders = descendants(proc.pid)
            loader_peak = max([loader_peak, *(_status(p).get("VmHWM", 0) for p in loaders)])
            for pid in [proc.pid, *loaders]:
                cpu[pid] = max(cpu.get(pid, 0.0), _cpu_s(pid))
            time.sleep(POLL_S)
        wall = time.monotonic() - started
    records = [json.loads(l) for p in runs.glob("*/log.jsonl") for l in p.read_text().splitlines() if l.strip()]
    epoch = records[-1] if records else {}
    return {"command": " ".join(["python", *command[1:]]), "exit_code": proc.returncode, "wall_s": round(wall, 1),
            "epoch_seconds": epoch.get("seconds"), "clips_per_s": epoch.get("clips_per_s"),
            "data_wait_share": epoch.get("data_wait"), "train_loss": epoch.get("train_loss"),
            "test_war": epoch.get("test_war"), "workers": workers, "main_process_peak_rss_mib": round(peak / 1024, 1),
            "loader_worker_peak_rss_mib": round(loader_peak / 1024, 1), "cpu_s": round(sum(cpu.values()), 1),
            "load_average_before": before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "machine_busy": load.busy_share,
            "log_tail": log_path.read_text(errors="replace").splitlines()[-4:]}


# ------------------------------------------------------------------------------ the benchmark
def git_commit() -> str | None:
    """The checkout's commit, with `+changes` when files differ from it (None outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def size_of(text: str, total: int) -> int:
    return total if text == "all" else min(int(text), total)


def measure_size(args, size: int, manifest: Path, standin: Path, env: dict, kill: bool) -> dict:
    sys.path.insert(0, str(ROOT))
    from pipeline.inputs.manifest import load_manifest
    from pipeline.run.stages import plan_shards

    rows = load_manifest(manifest)
    jobs = plan_shards(rows, 64)
    clips_of = {j.name: len(j.rows) for j in jobs}
    frames = sum(r.frames or 0 for r in rows.rows)
    out = args.work_dir / "scale-shards" / f"{args.dataset}-{size}"
    command = [sys.executable, "-m", "pipeline.preprocess", str(manifest), "--data-root", str(standin),
               "--out", str(out), "--profile", "cpu", *(["--workers", str(args.workers)] if args.workers else [])]
    if out.exists():
        shutil.rmtree(out)
    log(f"size {size}: {len(jobs)} shards, {frames:,} frames: {' '.join(command[1:])}")
    kill_record = None
    if kill and args.kill_in_run:
        # The size's one run is the killed one and its rerun: its figures are the two together.
        kill_record, first, second = kill_and_rerun(args, command, out, len(jobs), clips_of, manifest, env, size)
        run = joined_runs(first, second, clips_of)
    else:
        run = run_preprocess(command, out, args.work_dir / "scale-shards" / f"{args.dataset}-{size}.log", len(jobs),
                             env)
    figures = shard_figures(out) if (out / "index.json").is_file() else {}
    result = {
        "clips": size, "frames": frames, "command": " ".join(["python", *command[1:]]), **run,
        "clips_per_s": round(size / run["wall_s"], 3), "frames_per_s": round(frames / run["wall_s"], 1),
        "s_per_1000_clips": round(1000 * run["wall_s"] / size, 1),
        "cpu_s": round(sum(run["memory"]["cpu_s"].values()), 1),
        "cpu_s_per_1000_clips": round(1000 * sum(run["memory"]["cpu_s"].values()) / size, 1),
        "steady_state": run.pop("steady_state", None) or steady_state(run["commits"], clips_of), **figures,
        "progress_lines_within_shards_plus_few": run["log_lines"] <= len(jobs) + PROGRESS_SLACK * run.get("runs", 1),
        "verify": run_verify(out, env), "coverage": status_coverage(out, manifest),
    }
    result.pop("commits")
    log(f"size {size}: {run['wall_s']:.0f} s, {result['clips_per_s']:.2f} clips/s, driver peak "
        f"{run['memory']['driver_peak_rss_mib']:.0f} MiB, worker peak {run['memory']['worker_peak_rss_mib']:.0f} MiB, "
        f"{run['log_lines']} log lines for {len(jobs)} shards; verify {result['verify']['seconds']} s "
        f"({result['verify']['verdict']})")
    if kill_record is not None:
        result["kill_and_rerun"] = {**kill_record, "the_size_run": True}
    elif kill:
        result["kill_and_rerun"] = kill_and_rerun(args, command, out, len(jobs), clips_of, manifest, env, size)[0]
    return result


def joined_runs(first: dict, second: dict, clips_of: dict[str, int]) -> dict:
    """A run killed part way and its rerun as one run: times and CPU seconds added, memory peaks the
    larger, the steady state over both parts (each part from its first commit to its last)."""
    mem1, mem2 = first["memory"], second["memory"]
    memory = {
        "driver_peak_rss_mib": max(mem1["driver_peak_rss_mib"], mem2["driver_peak_rss_mib"]),
        "driver_peak_anon_mib": max(mem1["driver_peak_anon_mib"], mem2["driver_peak_anon_mib"]),
        "actor_peak_rss_mib": mem1["actor_peak_rss_mib"] + mem2["actor_peak_rss_mib"],
        "actor_peak_anon_mib": mem1["actor_peak_anon_mib"] + mem2["actor_peak_anon_mib"],
        "worker_peak_rss_mib": max(mem1["worker_peak_rss_mib"], mem2["worker_peak_rss_mib"]),
        "ray_processes_peak_rss_mib": {k: max(mem1["ray_processes_peak_rss_mib"].get(k, 0), v)
                                       for k, v in mem2["ray_processes_peak_rss_mib"].items()},
        "cpu_s": {k: round(mem1["cpu_s"].get(k, 0) + v, 1) for k, v in mem2["cpu_s"].items()},
        "parts": [mem1, mem2],
    }
    redone = {k: v for k, v in second["commits"].items() if k not in first["commits"]}   # the rerun's own commits
    parts = [steady_state(first["commits"], clips_of), steady_state(redone, clips_of)]
    parts = [p for p in parts if p]
    span = sum(p["last_commit_s"] - p["first_commit_s"] for p in parts)
    clips = sum(p["clips"] for p in parts)
    steady = {"parts": parts, "clips": clips, "clips_per_s": round(clips / max(span, 1e-9), 3),
              "s_per_1000_clips": round(1000 * span / max(clips, 1), 1)} if parts else {}
    return {"exit_code": second["exit_code"], "wall_s": round(first["wall_s"] + second["wall_s"], 1),
            "wall_s_parts": [first["wall_s"], second["wall_s"]], "killed": first["killed"] and
            {k: v for k, v in first["killed"].items() if k != "committed"},
            "commits": {**first["commits"], **redone}, "steady_state": steady, "memory": memory,
            "load_average_before": first["load_average_before"], "load_average_after": second["load_average_after"],
            "machine_busy": [first["machine_busy"], second["machine_busy"]],
            "log_lines": first["log_lines"] + second["log_lines"],
            "progress_lines": first["progress_lines"] + second["progress_lines"], "log_tail": second["log_tail"],
            "planned_shards": second["planned_shards"], "runs": 2}


def kill_and_rerun(args, command: list[str], out: Path, planned: int, clips_of: dict[str, int], manifest: Path,
                   env: dict, size: int) -> dict:
    """The same command killed with SIGKILL half way, then run again; what was lost, redone, kept."""
    if out.exists():
        shutil.rmtree(out)
    logs = args.work_dir / "scale-shards"
    half = max(1, planned // 2)
    log(f"size {size}: kill at {half} of {planned} shards committed, then rerun")
    first = run_preprocess(command, out, logs / f"{args.dataset}-{size}-killed.log", planned, env, kill_at=half)
    killed = first["killed"] or {}
    committed, in_flight = killed.get("committed", {}), killed.get("in_flight", {})
    second = run_preprocess(command, out, logs / f"{args.dataset}-{size}-rerun.log", planned, env)
    rerun_log = (logs / f"{args.dataset}-{size}-rerun.log").read_text(errors="replace")
    rewritten = []
    for name, identity in committed.items():
        st = (out / f"{name}.tar").stat()
        if [st.st_ino, st.st_mtime_ns, st.st_size] != identity:
            rewritten.append(name)
    redone = sorted(set(in_flight) & (set(clips_of) - set(committed)))
    coverage = status_coverage(out, manifest)
    verify = run_verify(out, env)
    workers = args.workers or os.cpu_count() or 1
    result = {
        "killed_at_s": killed.get("at_s"), "shards_planned": planned, "shards_committed_at_kill": len(committed),
        "shards_in_flight_at_kill": sorted(in_flight), "samples_written_in_flight_at_kill": sum(in_flight.values()),
        "in_flight_finished_not_committed": killed.get("finished_not_committed", []), "workers": workers,
        "rerun_said": next((l for l in rerun_log.splitlines() if "already complete" in l), ""),
        "rerun_exit_code": second["exit_code"], "rerun_wall_s": second["wall_s"],
        "rerun_shards_processed": planned - len(committed),
        "shards_redone": len(redone), "clips_redone": sum(clips_of[n] for n in redone),
        "committed_shards_rewritten": rewritten, "coverage": coverage, "verify": verify,
        "killed_run": {k: first[k] for k in ("wall_s", "memory", "load_average_before", "load_average_after")},
    }
    result["met"] = bool(second["exit_code"] == 0 and coverage["exactly_once"] and verify["exit_code"] == 0
                         and not rewritten and len(redone) <= len(in_flight))
    log(f"size {size}: killed at {len(committed)}/{planned} committed, {len(in_flight)} in flight "
        f"({sum(in_flight.values())} samples written); rerun {second['wall_s']:.0f} s exit {second['exit_code']}, "
        f"rows exactly once {coverage['exactly_once']}, verify {verify['verdict']}")
    return result, first, second


def orchestration(args, dataset: str, label: str, standin: Path, env: dict) -> dict:
    """bench/probes/orchestration.py over `dataset` (a manifest): the pipeline's driver, Ray, commits,
    index and verify at that many rows and shards, with no face work."""
    sys.path.insert(0, str(ROOT))
    from pipeline.inputs.manifest import load_manifest
    from pipeline.run.stages import plan_shards

    manifest = load_manifest(dataset)
    jobs = plan_shards(manifest, 64)
    out = args.work_dir / "scale-shards" / f"{args.dataset}-orchestration-{label}"
    command = [sys.executable, str(ROOT / "bench" / "probes" / "orchestration.py"), dataset, "--data-root",
               str(standin), "--out", str(out), *(["--workers", str(args.workers)] if args.workers else [])]
    log(f"orchestration without face work, {len(manifest):,} rows, {len(jobs)} shards")
    run = run_preprocess(command, out, args.work_dir / "scale-shards" / f"{args.dataset}-orchestration-{label}.log",
                         len(jobs), env)
    steady = steady_state(run["commits"], {j.name: len(j.rows) for j in jobs})
    run.pop("commits")
    result = {"rows": len(manifest), "shards": len(jobs), "command": " ".join(["python", *command[1:]]), **run,
              "steady_state": steady,
              "s_per_shard_steady": round((steady["last_commit_s"] - steady["first_commit_s"]) / (len(jobs) - 1), 3)
              if steady else None,
              "verify": run_verify(out, env), "coverage": status_coverage(out, manifest.source)}
    log(f"orchestration {len(jobs)} shards: {run['wall_s']:.0f} s, driver peak {run['memory']['driver_peak_rss_mib']:.0f} "
        f"MiB, {run['log_lines']} log lines; verify {result['verify']['seconds']} s ({result['verify']['verdict']})")
    return result


def targets(sizes: dict[str, dict], kill: dict | None, full: dict | None = None) -> list[dict]:
    """The targets of issue 33 at the sizes run (the smallest run is the reference)."""
    runs = sorted(sizes.values(), key=lambda r: r["clips"])
    base, top = runs[0], runs[-1]
    out = []
    label = f"{top['clips']:,} vs {base['clips']:,} clips"
    if len(runs) > 1 and base.get("steady_state") and top.get("steady_state"):
        ratio = top["steady_state"]["s_per_1000_clips"] / base["steady_state"]["s_per_1000_clips"]
        wall = top["s_per_1000_clips"] / base["s_per_1000_clips"]
        out.append({"target": f"time per 1,000 clips within {LINEAR_X}x of the {base['clips']:,}-clip run "
                              f"(steady state; {label})",
                    "value": f"{ratio:.2f}x ({top['steady_state']['s_per_1000_clips']} vs "
                             f"{base['steady_state']['s_per_1000_clips']} s; whole runs {wall:.2f}x)",
                    "met": ratio <= LINEAR_X})
        cpu = top["cpu_s_per_1000_clips"] / base["cpu_s_per_1000_clips"]
        out.append({"target": f"CPU seconds per 1,000 clips (the run's whole process tree; what another workload on the "
                              f"machine changes least) within {LINEAR_X}x of the {base['clips']:,}-clip run ({label})",
                    "value": f"{cpu:.2f}x ({top['cpu_s_per_1000_clips']} vs {base['cpu_s_per_1000_clips']} s)",
                    "met": cpu <= LINEAR_X})
    driver = top["memory"]["driver_peak_rss_mib"]
    out.append({"target": f"driver peak RSS under {DRIVER_MAX_GIB} GiB ({top['clips']:,} clips)",
                "value": f"{driver / 1024:.2f} GiB", "met": driver < DRIVER_MAX_GIB * 1024})
    if full:
        peak = full["memory"]["driver_peak_rss_mib"]
        ratio = peak / base["memory"]["driver_peak_rss_mib"]
        out.append({"target": f"driver peak RSS at full size ({full['rows']:,} rows, {full['shards']} shards, no face "
                              f"work) under {DRIVER_MAX_GIB} GiB and within {DRIVER_X}x of the {base['clips']:,}-clip run",
                    "value": f"{peak:.0f} MiB, {ratio:.2f}x", "met": peak < DRIVER_MAX_GIB * 1024 and ratio <= DRIVER_X})
        out.append({"target": "full size, no face work: every row once, verify OK, log lines <= shards + "
                              f"{PROGRESS_SLACK}",
                    "value": f"rows once {full['coverage']['exactly_once']}, {full['verify']['verdict']} in "
                             f"{full['verify']['seconds']} s, {full['log_lines']} lines / {full['shards']} shards",
                    "met": full["coverage"]["exactly_once"] and full["verify"]["exit_code"] == 0
                    and full["log_lines"] <= full["shards"] + PROGRESS_SLACK})
    if len(runs) > 1:
        ratio = driver / base["memory"]["driver_peak_rss_mib"]
        out.append({"target": f"driver peak RSS within {DRIVER_X}x of the {base['clips']:,}-clip run ({label})",
                    "value": f"{ratio:.2f}x ({driver:.0f} vs {base['memory']['driver_peak_rss_mib']:.0f} MiB)",
                    "met": ratio <= DRIVER_X})
        worker = top["memory"]["worker_peak_rss_mib"] / max(base["memory"]["worker_peak_rss_mib"], 1e-9)
        out.append({"target": f"worker peak RSS flat (within {WORKER_X}x; {label})",
                    "value": f"{worker:.2f}x ({top['memory']['worker_peak_rss_mib']:.0f} vs "
                             f"{base['memory']['worker_peak_rss_mib']:.0f} MiB)", "met": worker <= WORKER_X})
    lines = [(r["log_lines"], r["planned_shards"]) for r in runs]
    out.append({"target": f"non-TTY progress: log lines <= shards + {PROGRESS_SLACK}",
                "value": ", ".join(f"{n} lines / {s} shards" for n, s in lines),
                "met": all(r["progress_lines_within_shards_plus_few"] for r in runs)})
    if kill:
        out.append({"target": "SIGKILL half way, rerun: finishes, every row once, verify OK, redone <= in flight",
                    "value": f"{kill['shards_committed_at_kill']}/{kill['shards_planned']} committed, "
                             f"{len(kill['shards_in_flight_at_kill'])} in flight, {kill['shards_redone']} redone, "
                             f"rows once {kill['coverage']['exactly_once']}, {kill['verify']['verdict']}",
                    "met": kill["met"]})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ferv39k", choices=("dfew", "ferv39k", "mafw"))
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="clip counts, or all (default 1000 4000 all)")
    parser.add_argument("--workers", type=int, default=None, help="face-stage actors (default: the pipeline's, a CPU each)")
    parser.add_argument("--no-kill", action="store_true", help="skip the kill-and-rerun at the largest size")
    parser.add_argument("--no-train", action="store_true", help="skip the training epoch")
    parser.add_argument("--kill-in-run", action="store_true",
                        help="at the largest size, kill the size's own run half way and rerun it (its figures are "
                             "the two parts together) instead of a clean run and then a second, killed one: half "
                             "the time")
    parser.add_argument("--no-orchestration", action="store_true",
                        help="skip the runs without face work (bench/probes/orchestration.py) at the smallest and "
                             "the full size")
    parser.add_argument("--train-size", default=None,
                        help="train on the shards of this size (default: the largest; on a busy machine an epoch of "
                             "MODEL=tiny can take half an hour per 1,000 clips)")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "data",
                        help="where the stand-in (standin-<dataset>/), the shards and logs (scale-shards/) go")
    parser.add_argument("--sample", type=Path, default=ROOT / "data" / "sample")
    parser.add_argument("--out", type=Path, default=None,
                        help="default bench/results/scale-<dataset>.json (other --sizes: scale-<dataset>-<sizes>.json)")
    parser.add_argument("--note", default=None, help="a sentence kept in the JSON (e.g. what else ran on the machine)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep what --out already holds (sizes, training, orchestration) and run only the rest: "
                             "a run stopped part way, or a step added later")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pipeline.inputs.manifest import load_manifest
    from pipeline.sample.standin import build_standin

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    total = len(load_manifest(args.dataset))
    sizes = sorted({size_of(s, total) for s in args.sizes})
    standin = args.work_dir / f"standin-{args.dataset}"
    (args.work_dir / "scale-shards").mkdir(parents=True, exist_ok=True)
    # The default sizes write scale-<dataset>.json; other sizes (make scale CLIPS=1000) their own file,
    # so that a short run never overwrites the full-size figures.
    suffix = "" if list(args.sizes) == list(SIZES) else "-" + "-".join(args.sizes)
    out = args.out or RESULTS / f"scale-{args.dataset}{suffix}.json"
    commit = git_commit()
    report = {"benchmark": "scale", "dataset": args.dataset, "manifest_clips": total, "sizes_run": sizes,
              "sizes_asked": args.sizes, "machine": machine_info(), "command": " ".join(sys.argv), "commit": commit,
              "standin": {}, "sizes": {}}
    if args.reuse and out.is_file():
        kept = json.loads(out.read_text())
        if kept.get("dataset") == args.dataset:
            report = {**kept, "sizes_run": sorted({*kept.get("sizes_run", []), *sizes}),
                      "commands": [*kept.get("commands", [kept.get("command")]), " ".join(sys.argv)],
                      "commits": [*kept.get("commits", [kept.get("commit")]), commit],
                      "machine_later": machine_info()}
    if args.note:
        report["notes"] = [*report.get("notes", []), args.note]
    started = time.monotonic()
    for size in sizes:
        if str(size) in report["sizes"] and (args.no_kill or size != sizes[-1]
                                             or "kill_and_rerun" in report["sizes"][str(size)]):
            log(f"size {size}: kept from {out}")
            continue
        record = build_standin(args.dataset, standin, size, args.sample, manifest_name=f"manifest-{size}.csv")
        report["standin"][str(size)] = {k: record[k] for k in ("clips", "frames", "clip_folders_written", "seconds")}
        report["sizes"][str(size)] = measure_size(args, size, standin / f"manifest-{size}.csv", standin, env,
                                                  kill=not args.no_kill and size == sizes[-1])
        write_json(out, report)   # kept if a later step fails or the run is stopped
    largest = str(max(int(k) for k in report["sizes"]))
    trained = str(size_of(args.train_size, total)) if args.train_size else largest
    if not args.no_train and report.get("training", {}).get("clips") != int(trained):
        if trained not in report["sizes"]:
            parser.error(f"--train-size {args.train_size}: not one of the sizes run ({', '.join(report['sizes'])})")
        if "training" in report:   # kept from a run on another size (--reuse)
            report.setdefault("training_other_sizes", []).append(report.pop("training"))
        log(f"training one epoch of MODEL=tiny on the {trained}-clip shards")
        report["training"] = {"clips": int(trained), **run_training(
            args.dataset, args.work_dir / "scale-shards" / f"{args.dataset}-{trained}",
            args.work_dir / "scale-shards" / "runs", os.cpu_count() or 1, env)}
        log(f"training: {report['training']['clips_per_s']} clips/s, data wait {report['training']['data_wait_share']}")
        write_json(out, report)
    if not args.no_orchestration and "orchestration" not in report:
        smallest = str(min(int(k) for k in report["sizes"]))
        report["orchestration"] = {
            smallest: orchestration(args, str(standin / f"manifest-{smallest}.csv"), smallest, standin, env),
            "all": orchestration(args, args.dataset, "all", standin, env)}
        write_json(out, report)
    report["targets"] = targets(report["sizes"], report["sizes"][largest].get("kill_and_rerun"),
                                report.get("orchestration", {}).get("all"))
    report["total_seconds"] = round(time.monotonic() - started + (report.get("total_seconds") or 0), 1)
    write_json(out, report)
    print()
    print(table(("clips", "wall s", "clips/s", "s/1000 (steady)", "driver MiB", "worker MiB", "shards", "MiB",
                 "verify s", "log lines", "load before/after"),
                [(r["clips"], r["wall_s"], r["clips_per_s"], r["steady_state"].get("s_per_1000_clips"),
                  r["memory"]["driver_peak_rss_mib"], r["memory"]["worker_peak_rss_mib"], r.get("shards"),
                  round(r.get("bytes", 0) / 2**20), r["verify"]["seconds"], r["log_lines"],
                  f"{r['load_average_before'][0]}/{r['load_average_after'][0]}") for r in report["sizes"].values()]))
    print()
    print(table(("target", "measured", "met"), [(t["target"], t["value"], t["met"]) for t in report["targets"]]))
    print(f"\nscale: {report['total_seconds'] / 60:.1f} min; {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
