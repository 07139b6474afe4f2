"""bench/scale.py's arithmetic for a run killed part way and rerun (`--kill-in-run`): the two parts
make one run, and the rerun's steady state counts only the shards it committed itself."""

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _scale():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module("scale")
    finally:
        sys.path.remove(str(ROOT / "bench"))


def _part(commits, wall, cpu, driver, actors, lines, killed=None):
    memory = {"driver_peak_rss_mib": driver, "driver_peak_anon_mib": driver / 2,
              "actor_peak_rss_mib": actors, "actor_peak_anon_mib": [a / 2 for a in actors],
              "worker_peak_rss_mib": max(actors), "ray_processes_peak_rss_mib": {"raylet": 30.0},
              "cpu_s": {"driver": cpu / 10, "actor": cpu * 0.9}}
    return {"exit_code": None if killed else 0, "wall_s": wall, "killed": killed, "commits": commits,
            "memory": memory, "load_average_before": [1.0], "load_average_after": [2.0], "machine_busy": 0.9,
            "log_lines": lines, "progress_lines": lines - 3, "log_tail": [], "planned_shards": 6}


def test_a_killed_run_and_its_rerun_are_one_run():
    scale = _scale()
    clips_of = {f"s{i}": 64 for i in range(6)}
    first = _part({"s0": 10.0, "s1": 20.0, "s2": 30.0}, 35.0, 100.0, 250.0, [350.0, 352.0], 5,
                  killed={"committed": {"s0": [1, 2, 3]}, "in_flight": {"s3": 10}, "at_s": 31.0})
    # the rerun finds s0-s2 committed at its first look (0.5 s) and commits s3-s5 itself
    second = _part({"s0": 0.5, "s1": 0.5, "s2": 0.5, "s3": 12.0, "s4": 22.0, "s5": 32.0}, 33.0, 90.0, 260.0,
                   [351.0, 353.0], 6)
    run = scale.joined_runs(first, second, clips_of)
    assert run["wall_s"] == 68.0 and run["wall_s_parts"] == [35.0, 33.0] and run["exit_code"] == 0
    assert run["memory"]["driver_peak_rss_mib"] == 260.0 and run["memory"]["worker_peak_rss_mib"] == 353.0
    assert run["memory"]["actor_peak_rss_mib"] == [350.0, 352.0, 351.0, 353.0]
    assert run["memory"]["cpu_s"] == {"driver": 19.0, "actor": 171.0}
    assert set(run["commits"]) == set(clips_of) and run["commits"]["s3"] == 12.0
    # each part from its first commit to its last: (30 - 10) + (32 - 12) s for 2 x 2 shards of 64 clips
    steady = run["steady_state"]
    assert [p["clips"] for p in steady["parts"]] == [128, 128]
    assert steady["clips"] == 256 and steady["s_per_1000_clips"] == round(1000 * 40 / 256, 1)
    assert "committed" not in run["killed"] and run["killed"]["in_flight"] == {"s3": 10}
    assert run["log_lines"] == 11 and run["runs"] == 2
