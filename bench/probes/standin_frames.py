"""Probe for issue 33: how much cheaper a stand-in's identical frames make the face stage than
frames that are all different.

    PYTHONPATH=. python bench/probes/standin_frames.py [--clips 200] [--dataset ferv39k]
        [--work-dir /tmp/dfer-bench/standin-frames] [--out bench/results/standin_frames.json]

The same clips (a stratified subset of the dataset's manifest, real frame counts) are built three
ways (pipeline/sample/standin.py): every frame a hard link to ONE JPEG; the stand-in's default, hard
links to a pool of 8 sequences of the sample's face crops; and every frame a JPEG file of its own
(the pool's frame with its pixels nudged by ±1 level, so no two files are alike). The distinct
files are also read a second time, dropped from the page cache (posix_fadvise DONTNEED) just
before their shard: a read from the disk, as a dataset too large for the memory is read (on a
virtual machine the host may still cache it). The cpu
profile's face stage (official crops: decode, landmarks, masks, the geometric description,
encoding, writing) runs over them in this one process, without Ray, shard by shard with the
forms in turn, so that all see the same machine load. Recorded per form: the
process's CPU seconds, wall seconds, each step's milliseconds per frame (the stage's own step
timer) and the bytes written, with ratios to the distinct-files form.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

FORMS = ("one JPEG", "pool of 8 sequences", "distinct files", "distinct files, evicted")
EVICTED = "distinct files, evicted"   # the distinct files again, dropped from the page cache before each shard


def build(forms_root: Path, dataset: str, clips: int, sample: Path) -> dict[str, Path]:
    from pipeline.sample.standin import POOL_DIR, build_standin, make_pool

    roots = {form: forms_root / form.replace(" ", "-") for form in FORMS if form != EVICTED}
    for form, root in roots.items():
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        pool = make_pool(sample, root / POOL_DIR)
        if form == "one JPEG":
            pool = [[pool[0][0]]]
        build_standin(dataset, root, clips, sample, pool=pool, distinct=form == "distinct files", quiet=True)
    roots[EVICTED] = roots["distinct files"]
    return roots


def evict(root: Path, job) -> None:
    """Drop a shard's frame files from the page cache (posix_fadvise DONTNEED: this process's files
    only, no privileges), so that the next read comes from the disk, or from what the host caches."""
    for row in job.rows:
        for folder in (root / p for p in _official_folders(root, row)):
            for image in folder.iterdir() if folder.is_dir() else ():
                fd = os.open(image, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


def _official_folders(root: Path, row: dict) -> list[str]:
    from pipeline.inputs.manifest import ManifestRow, load_locator

    return load_locator(root / "manifest.csv").official_paths(ManifestRow(**row))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--dataset", default="ferv39k")
    parser.add_argument("--shard-size", type=int, default=20)
    parser.add_argument("--sample", type=Path, default=ROOT / "data" / "sample")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/dfer-bench/standin-frames"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "standin_frames.json")
    args = parser.parse_args()

    import cv2

    from common import LoadMonitor, log, machine_info, table, write_json
    from pipeline.backends import PROFILES
    from pipeline.inputs.manifest import load_manifest
    from pipeline.run.stages import FaceConfig, FaceStage, describe_config, plan_shards

    cv2.setNumThreads(1)
    machine = machine_info()
    log(f"building {args.clips} clips of {args.dataset} three ways in {args.work_dir}")
    roots = build(args.work_dir, args.dataset, args.clips, args.sample)
    cpu = PROFILES["cpu"]
    stages, jobs = {}, {}
    for form, root in roots.items():
        work = args.work_dir / "work" / form.replace(" ", "-")
        work.mkdir(parents=True, exist_ok=True)
        config = FaceConfig(dataset=args.dataset, manifest=str(root / "manifest.csv"), data_root=str(root),
                            work_dir=str(work), detector=cpu.detector, landmarker=cpu.landmarker, parser=cpu.parser,
                            crop="official", decode_threads=1)
        stage = FaceStage(config, describe_config(cpu.describer, work, {}, 0))
        stage.setup()
        stages[form] = stage
        jobs[form] = plan_shards(load_manifest(root / "manifest.csv"), args.shard_size)
    totals = {form: {"cpu_s": 0.0, "wall_s": 0.0, "steps": Counter(), "frames": 0, "bytes": 0, "ok": 0} for form in FORMS}
    with LoadMonitor() as load:
        for i in range(len(jobs[FORMS[0]])):
            for form in FORMS if i % 2 == 0 else FORMS[::-1]:    # alternate the order: no form always first
                job = jobs[form][i]
                if form == EVICTED:
                    evict(roots[form], job)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                done = stages[form].process(job)
                totals[form]["cpu_s"] += time.process_time() - cpu0
                totals[form]["wall_s"] += time.perf_counter() - wall0
                totals[form]["steps"].update({k: v for k, v in done.seconds.items() if k.startswith("face.")})
                totals[form]["steps"]["describe"] += done.seconds.get("describe", 0.0)
                totals[form]["frames"] += int(done.seconds.get("count.frames_kept", 0))
                totals[form]["bytes"] += Path(done.work_tar).stat().st_size
                totals[form]["ok"] += sum(s["status"] == "ok" for s in done.status.values())
                os.remove(done.work_tar)
            log(f"shard {i + 1}/{len(jobs[FORMS[0]])}")
    distinct = totals["distinct files"]
    results = {}
    for form, t in totals.items():
        frames = max(t["frames"], 1)
        results[form] = {
            "clips_ok": t["ok"], "frames": t["frames"], "cpu_s": round(t["cpu_s"], 2), "wall_s": round(t["wall_s"], 2),
            "cpu_ms_per_frame": round(1000 * t["cpu_s"] / frames, 3),
            "wall_ms_per_frame": round(1000 * t["wall_s"] / frames, 3),
            "step_ms_per_frame": {k.removeprefix("face."): round(1000 * v / frames, 3) for k, v in sorted(t["steps"].items())},
            "bytes_per_frame": round(t["bytes"] / frames),
            "cpu_ratio_to_distinct": round(t["cpu_s"] / max(distinct["cpu_s"], 1e-9), 3),
            "wall_ratio_to_distinct": round(t["wall_s"] / max(distinct["wall_s"], 1e-9), 3),
        }
    report = {"probe": "standin_frames", "dataset": args.dataset, "clips": args.clips, "machine": machine,
              "machine_busy": load.busy_share, "command": " ".join(sys.argv), "forms": results}
    write_json(args.out, report)
    steps = sorted({k for r in results.values() for k in r["step_ms_per_frame"]})
    print(table(("form", "CPU ms/frame", "x distinct", "wall ms/frame", "x distinct", *steps, "bytes/frame"),
                [(f, r["cpu_ms_per_frame"], r["cpu_ratio_to_distinct"], r["wall_ms_per_frame"],
                  r["wall_ratio_to_distinct"], *(r["step_ms_per_frame"].get(s) for s in steps),
                  r["bytes_per_frame"]) for f, r in results.items()], digits=3))
    print(f"machine busy {load.busy_share}; {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
