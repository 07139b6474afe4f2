"""Describe the clips of finished shards again, with another describer, without redoing the face stage.

    python -m pipeline.describe shards/mafw --describer videollava [--describer-model ID] [--workers N]
    python -m pipeline.describe shards/mafw --describer qwen2.5-vl [--describe-batch-size 16]

Each complete shard's samples are read, given a new description (and, from the geometric
describer, new AU signals), and the shard is replaced atomically with updated status and
stats. Nothing of the earlier pass is lost: each sample's description record keeps the records
it replaced (`earlier`, oldest first), and run.json and the index list every pass in
`description_passes` (the preprocessing's first), with `describer` naming the current one. A
later `make preprocess` of the same folder (to finish shards not yet done) describes them with
that current describer, so the folder stays one describer's. Clips whose description fails are
marked failed with reason `describe_error`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

from pipeline.backends import DESCRIBERS
from pipeline.describers.command_line import add_describer_options
from pipeline.shards.files import write_atomic
from pipeline.shards.folder import RUN, FolderBusyError, OutputFolder
from pipeline.run.progress import ProgressBar
from pipeline.run.stages import DescribeStage, ShardJob, describe_config, describe_identity


def redescribe(out: Path, describer: str, options: dict | None = None, workers: int | None = None,
               ray_address: str | None = None, progress: bool = True, batch_size: int | None = None) -> dict:
    """Replace the descriptions in every complete shard of `out`; returns the new index. `batch_size`:
    the clips a batched describer decodes together (None: its default)."""
    from pipeline.run.ray_runner import init_ray, run_stages, shutdown_ray

    folder = OutputFolder(out)
    if not (out / RUN).is_file():
        raise FileNotFoundError(f"{out} holds no pipeline output (no {RUN}); run make preprocess first")
    folder.lock()
    try:
        resources = init_ray(ray_address)
        gpus = float(resources.get("GPU", 0))
        config = describe_config(describer, folder.work_dir(uuid.uuid4().hex[:8]), options or {}, gpus, batch_size)
        if config is None:
            raise ValueError("choose a describer")
        size = max(1, int(gpus)) if config.gpus_per_worker else (workers or int(resources.get("CPU", 1)))
        jobs = []
        for stats in folder.all_stats():
            rows = folder.status_rows(stats["name"])
            jobs.append(ShardJob(name=stats["name"], partition=stats["partition"], rows=rows,
                                 status={r["clip_id"]: {k: r[k] for k in ("status", "reason", "message")} for r in rows},
                                 work_tar=str(out / f"{stats['name']}.tar")))
        print(f"describing {sum(s['ok'] for s in folder.all_stats())} clips of {len(jobs)} shards with {describer}")
        bar = ProgressBar(sum(len(j.rows) for j in jobs), enabled=progress, shards=len(jobs), label="describe")
        for job in run_stages(jobs, [(DescribeStage(config), size)]):
            stats = folder.commit(job.name, job.partition, job.rows, job.status, Path(job.work_tar), job.seconds)
            bar.update(stats["ok"], stats["failed"])
        bar.close()
        folder.finish_work()
        run = json.loads((out / RUN).read_text())
        index = json.loads((out / "index.json").read_text())
        passes = run.get("description_passes") or [
            {"describer": run.get("describer"), "describer_options": run.get("describer_options") or {},
             "model": index["models"].get("description"), "by": "make preprocess"}]
        passes.append({"describer": config.describer, "describer_options": dict(config.options),
                       "model": describe_identity(config), "by": "make describe",
                       "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        run.update(describer=config.describer, describer_options=dict(config.options), description_passes=passes)
        write_atomic(out / RUN, json.dumps(run, indent=1, sort_keys=True) + "\n")
        index["config"] = run
        index["models"]["description"] = passes[-1]["model"]
        return folder.write_index(dataset=index["dataset"], classes=index["classes"],
                                  partitions=index["partitions"], manifest=index["manifest"], config=run,
                                  models=index["models"], planned=[s["name"] for s in index["shards"]]
                                  + index["missing_shards"])
    finally:
        folder.unlock()
        shutdown_ray()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.describe", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="a dataset folder written by make preprocess")
    parser.add_argument("--describer", choices=sorted(DESCRIBERS), required=True)
    add_describer_options(parser)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS") or None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        index = redescribe(args.out, args.describer, {"model_id": args.describer_model,
                                                      "revision": args.describer_revision,
                                                      "setting": args.describer_setting},
                           args.workers, args.ray_address, progress=not args.no_progress,
                           batch_size=args.describe_batch_size)
    except (FolderBusyError, FileNotFoundError, RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"done: {index['ok']} clips described, {index['failed']} failed "
          f"({', '.join(f'{k} {v}' for k, v in index['failures'].items()) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
