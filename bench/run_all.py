"""`make bench`: run every benchmark, write each one's JSON under bench/results/, print a summary.

    python bench/run_all.py [--quick] [--only pipeline loader trainer frame_encoding]
        [--work-dir /tmp/dfer-bench] [--results bench/results]

Runs, each in its own process and in this order: bench/frame_encoding.py,
bench/pipeline_speed.py, bench/sample_accuracy.py, bench/loader_speed.py and
bench/trainer_speed.py (the last three read the shards the pipeline benchmark made from the
sample; sample_accuracy scores their descriptions against the generator's truth and trains
MODEL=tiny on the five folds (seed 0): the 5-fold mean UAR a faster face stage must keep, next
to the landmark NME). Every result file holds the machine
(CPU count and model, platform, Python, torch, GPU or none, date, load average). A summary of
the key figures and targets is printed and written to summary.json next to them. Exits non-zero
when a benchmark fails. `--quick` (make bench QUICK=1) runs smaller sets in a few minutes and
writes into bench/results/quick/, leaving the full figures alone. docs/benchmarks.md explains
every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import DEFAULT_WORK, RESULTS, ROOT, fmt, log, machine_info, table, write_json

BENCH = Path(__file__).resolve().parent
ORDER = ("frame_encoding", "pipeline", "accuracy", "loader", "trainer")


def commands(args: argparse.Namespace, results: Path) -> dict[str, list[str]]:
    py = sys.executable
    quick = ["--quick"] if args.quick else []
    work = ["--work-dir", str(args.work_dir)]
    shards = args.work_dir / "out" / f"sample{'-quick' if args.quick else ''}-w{os.cpu_count() or 1}"
    shard_arg = ["--shards", str(shards)] if "pipeline" in args.only else []
    return {
        "frame_encoding": [py, str(BENCH / "frame_encoding.py"), "--out", str(results / "frame_encoding.json"),
                           *(["--repeats", "10"] if args.quick else [])],
        "pipeline": [py, str(BENCH / "pipeline_speed.py"), *quick, *work,
                     "--out", str(results / "pipeline_speed.json")],
        "accuracy": [py, str(BENCH / "sample_accuracy.py"), *work, "--shards", str(shards),
                     "--out", str(results / "sample_accuracy.json"), *(["--no-training"] if args.quick else [])],
        "loader": [py, str(BENCH / "loader_speed.py"), *quick, *work, *shard_arg,
                   "--out", str(results / "loader_speed.json")],
        "trainer": [py, str(BENCH / "trainer_speed.py"), *quick, *work, *shard_arg,
                    "--out", str(results / "trainer_speed.json")],
    }


def summarise(results: Path, names: list[str]) -> tuple[list[tuple], list[tuple]]:
    """(key figures, targets) rows from the JSON files of this run."""
    figures, targets = [], []

    def load(name: str) -> dict | None:
        path = results / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    if "pipeline" in names and (p := load("pipeline_speed")):
        for set_name, s in p["sets"].items():
            for r in s["runs"]:
                label = f"pipeline {set_name}, {r['workers']} worker(s)" + \
                    ("" if r["describer"].endswith("(profile)") else f", describer {r['describer']}")
                decode = s["decode_only"]["decode_clip"]["wall_s"]
                median = f", median of {len(r['rounds'])} rounds {r['ratio_median_of_rounds']:.2f}x" if "rounds" in r else ""
                figures.append((label, f"{r['wall_s']:.1f} s vs decode {decode:.1f} s ({s['clips']} clips)",
                                f"ratio {r['ratio_to_decode_clip']:.2f}x ({r['ratio_after_start_up']:.2f}x after "
                                f"{r['start_up_s']:.1f} s of start-up){median}, {r['clips_per_s']:.2f} clips/s"))
        t = p["target"]
        per_set = ", ".join(f"{k} {v:.2f}x" for k, v in t.get("per_set", {}).items())
        rounds = f" (median of {t['rounds']} rounds)" if t.get("rounds", 1) > 1 else ""
        targets.append((f"pipeline cpu profile <= 2x decode-only (720p){rounds}", per_set or fmt(t["ratio"]), t["met"]))
        if lm := p.get("landmarks"):
            targets.append(("landmark NME on the sample within 10 % of before",
                            f"{lm['nme_mean']:.5f} vs {lm['nme_before']:.5f} (x{lm['ratio_to_before']})", lm["met"]))
    if "accuracy" in names and (acc := load("sample_accuracy")):
        d = acc["descriptions"]
        figures.append(("sample descriptions vs truth", f"F1 {d['f1']:.3f}",
                        f"{d['exact']}/{d['clips']} clips exact, {100 * d['slight_share']:.0f} % of named actions slight"))
        if t := acc.get("training"):
            figures.append((f"sample tiny, folds {' '.join(t['folds'])}, seeds {' '.join(map(str, t['seeds']))}",
                            f"val UAR {t['val_uar']['mean']:.1f} ± {t['val_uar']['std']:.1f}",
                            f"paper UAR {t['paper_uar']['mean']:.1f} ± {t['paper_uar']['std']:.1f} (over runs); per run "
                            + " ".join(f"{v:.1f}" for v in t["val_uar"]["values"])))
            if five := t.get("five_fold_val_uar"):
                figures.append(("sample tiny, 5-fold mean", f"val UAR {five['mean']:.1f} ± {five['std_over_seeds']:.1f}"
                                f" over seeds", f"paper UAR {t['five_fold_paper_uar']['mean']:.1f}; per seed "
                                + " ".join(f"{v:.1f}" for v in five["by_seed"].values())))
        targets += [(t["target"], fmt(t["value"]), t["met"]) for t in acc["targets"]]
    if "loader" in names and (lo := load("loader_speed")):
        for workers, m in lo["throughput"].items():
            ours, base = m["shards (frames)"], m["JPEG folders (cv2)"]
            figures.append((f"loader, {workers} worker(s)", f"{ours['clips_per_s_per_worker_best']:.1f} vs "
                            f"{base['clips_per_s_per_worker_best']:.1f} clips/s/worker (JPEG folders)",
                            f"ratio per run {' '.join(f'{r:.2f}' for r in ours['ratio_to_jpeg_cv2_runs'])}x; "
                            f"FineCLIPER inputs "
                            f"{m['shards (FineCLIPER)']['clips_per_s_per_worker_best']:.1f}"
                            + (f"; vs DFER-CLIP's /255-only conversion {r255:.2f}x"
                               if (r255 := ours.get("ratio_to_jpeg_cv2_div255_min")) else "")))
        b = lo["bytes_per_clip"]
        figures.append(("shard bytes per clip", f"{b['shards_all_fields'] / 1024:.0f} KiB "
                        f"({b.get('shards_allocated', 0) / 1024:.0f} KiB on disk)",
                        f"JPEG folders {b['jpeg_folders'] / 1024:.0f} KiB ({b['jpeg_folders_allocated'] / 1024:.0f} on "
                        f"disk); as cv2.imwrite writes them {b.get('jpeg_folders_cv2_default', 0) / 1024:.0f} KiB "
                        f"({b.get('jpeg_folders_cv2_default_allocated', 0) / 1024:.0f} on disk)"))
        t = lo["target"]
        targets.append(("loader >= 3x JPEG folders per worker (lowest paired run)", fmt(t["ratio"]), t["met"]))
    if "trainer" in names and (tr := load("trainer_speed")):
        for model, r in tr["models"].items():
            if "error" in r or "skipped" in r:
                figures.append((f"trainer {model}", "error" if "error" in r else "skipped",
                                (r.get("error") or r.get("skipped")).splitlines()[0][:70]))
                continue
            figures.append((f"trainer {model} ({r['device']}, batch {r['batch_size']})",
                            f"{r['median_compute_s']:.3g} s/step, {r['samples_per_s_compute']:.3g} clips/s",
                            f"data wait {100 * r['epochs_after_first']['data_wait_share']:.1f}%, peak RSS "
                            f"{r['peak_rss_mib'] / 1024:.1f} GiB"
                            + (f"; persistent-workers what-if {100 * w['epochs_after_first']['data_wait_share']:.1f}%"
                               if (w := r.get("what_if_persistent_workers")) else "")))
        t = tr["target"]
        targets.append((f"trainer data wait < 10% ({t['loader_workers']} workers)",
                        fmt(t["data_wait_share"], 3), t["met"]))
    if "frame_encoding" in names and (fe := load("frame_encoding")):
        r = fe["results"]["mjpeg_q90_optimized_with_offsets"]
        figures.append(("frame encoding (MJPEG q90, optimised Huffman)", f"{r['bytes_per_clip'] / 1024:.0f} KiB/clip",
                        f"decode 16 frames {r['decode16_ms']:.2f} ms"))
    return figures, targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sets; results into bench/results/quick/")
    parser.add_argument("--only", nargs="+", choices=ORDER, default=list(ORDER))
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK,
                        help="generated clips, shards and JPEG folders (reused between runs)")
    parser.add_argument("--results", type=Path, default=None, help="default bench/results (quick: bench/results/quick)")
    args = parser.parse_args()
    results = args.results or (RESULTS / "quick" if args.quick else RESULTS)
    results.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.perf_counter()
    runs, failed = {}, []
    for name, command in commands(args, results).items():
        if name not in args.only:
            continue
        log(f"== {name}: {' '.join(Path(c).name if c.startswith('/') else c for c in command)}")
        start = time.perf_counter()
        code = subprocess.call(command, cwd=ROOT, env=env)
        runs[name] = {"exit_code": code, "seconds": round(time.perf_counter() - start, 1)}
        if code:
            failed.append(name)
            log(f"== {name} FAILED (exit code {code})")
    total = time.perf_counter() - started
    figures, targets = summarise(results, [n for n in runs if n not in failed])
    summary = {"benchmark": "run_all", "quick": args.quick, "machine": machine, "total_seconds": round(total, 1),
               "runs": runs, "failed": failed, "work_dir": str(args.work_dir),
               "targets": [{"target": t, "value": v, "met": m} for t, v, m in targets]}
    write_json(results / "summary.json", summary)
    print()
    print(table(("benchmark", "seconds", "exit"), [(n, r["seconds"], r["exit_code"]) for n, r in runs.items()]))
    print()
    print(table(("figure", "value", "detail"), figures))
    print()
    print(table(("target", "measured", "met"), targets))
    print(f"\nall benchmarks: {total / 60:.1f} min; results in {results}/ (machine: {machine['cpu_count']} CPUs, "
          f"torch {machine.get('torch')}, GPU {machine.get('gpu') or 'none'})")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
