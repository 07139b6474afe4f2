"""Measure training: step time, clips/s, peak memory, and the share of step time spent waiting for data.

    python bench/trainer_speed.py [--shards DIR] [--models tiny fineclip-b16] [--quick]
        [--work-dir /tmp/dfer-bench] [--out bench/results/trainer_speed.json]

Each model runs in a fresh process (its peak memory is that process's own) and trains with
the trainer's real pieces on real shards (default: the sample's, as bench/loader_speed.py
finds them): the configuration `trainer.config.resolve(MODEL, "sample")` gives (frames, image
size, batch size and the documented loader worker count, `workers`), `trainer.data.make_loader`,
`trainer.models.build_model` with random CLIP weights, AdamW, gradient clipping, bf16 autocast
on a GPU. Every step is split into the wait for the next batch (`next(loader)`) and the
compute (`trainer.data.to_model_inputs`: to the device and the uint8 images converted and
CLIP-normalised there, then forward, backward, clip, optimiser step); the data-wait share is
wait / (wait + compute), over the epochs after the first (the first also warms up the model;
all steps are recorded too) and over the steps after each epoch's first batch (the trainer
starts its loader workers afresh every epoch, so the first batch of an epoch includes their
start-up). fineclip-b16 on CPU runs steps of one epoch only, its figures are over all steps.

CPU: `tiny` trains 4 epochs of the sample (batch 8, 8 frames at 64²); `fineclip-b16` takes
2 steps at batch 1 (16 frames at 224², masks, landmarks and descriptions; the first step is
also a warm-up, the step time is the second's), skipped with --quick. With a GPU: bf16,
batch 32 or the largest that fits, and bench/trainer_step.py's synthetic-batch step as well.
The trainer's own figure is also recorded: `tiny` trained by `trainer.train.train` for 2 epochs,
whose log.jsonl holds `data_wait` per epoch (there its denominator also holds validation).
What-if (not the toolkit's behaviour, not with --quick): for `tiny` a second loader over the
same dataset with its workers kept between epochs (persistent_workers=True) takes every
other epoch of the same run (4 epochs each), to size that change under the same load.
Results: bench/results/trainer_speed.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from common import DEFAULT_WORK, RESULTS, ROOT, log, machine_info, rss_mib, table, write_json

REAL = "trainer.data.make_loader"
PERSISTENT = "what-if: persistent_workers=True"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def real_loop(model_name: str, shards: str, overrides: dict, max_steps: int | None, epochs: int,
              what_if: bool = False) -> dict:
    """Train `model_name` with the real loader for `epochs` epochs (or `max_steps` steps); time every step.
    `what_if`: a second loader over the same dataset with persistent_workers=True (workers kept between
    epochs) takes every other epoch, so that both see the same machine load."""
    import torch

    from trainer.config import resolve
    from trainer.data import collate, make_loader, read_index, to_model_inputs
    from trainer.train import make_optimizer, optimizer_step

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = resolve(model_name, "sample", {"shards": shards, **overrides})
    classes = read_index(config.shard_dir)["classes"]
    before_model = rss_mib()
    model = config.build_model(classes, pretrained=False).to(device)
    loaders = {REAL: make_loader(config.data_config(model), "train", classes)}
    if what_if:
        real = loaders[REAL]
        loaders[PERSISTENT] = torch.utils.data.DataLoader(
            real.dataset, batch_size=real.batch_size, num_workers=real.num_workers, collate_fn=collate,
            persistent_workers=real.num_workers > 0, pin_memory=torch.cuda.is_available())
    optimizer = make_optimizer(model, config)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps: dict[str, list[dict]] = {name: [] for name in loaders}
    for epoch in range(epochs):
        for name, loader in loaders.items():
            loader.dataset.set_epoch(epoch)
            fetched = time.perf_counter()
            for index, batch in enumerate(loader):
                arrived = time.perf_counter()
                batch = to_model_inputs(batch, device)   # normalised on the device: part of the step
                with autocast():
                    loss = model(batch)["loss"]
                optimizer_step(loss, optimizer, config.grad_clip)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                finished = time.perf_counter()
                steps[name].append({"epoch": epoch, "index": index, "wait_s": arrived - fetched,
                                    "compute_s": finished - arrived, "clips": len(batch["keys"])})
                fetched = time.perf_counter()
                if max_steps and len(steps[name]) >= max_steps:
                    break

    def share(rows: list[dict]) -> dict:
        wait, compute = sum(r["wait_s"] for r in rows), sum(r["compute_s"] for r in rows)
        clips = sum(r["clips"] for r in rows)
        return {"steps": len(rows), "data_wait_share": round(wait / max(wait + compute, 1e-9), 4),
                "step_s": round((wait + compute) / max(len(rows), 1), 4),
                "compute_s": round(compute / max(len(rows), 1), 4),
                "clips_per_s": round(clips / max(wait + compute, 1e-9), 3)}

    def summary(rows: list[dict]) -> dict:
        later = [r for r in rows if r["epoch"] > 0] or rows
        return {"all_steps": share(rows),
                # the first epoch also warms up the model and allocator: a long run looks like the later ones
                "epochs_after_first": share(later),
                # within an epoch, once the first batch is there: can the workers keep up?
                "after_first_batch_of_epoch": share([r for r in later if r["index"] > 0] or later)}

    rows = steps[REAL]
    compute_only = sorted(r["compute_s"] for r in rows[1:]) or [rows[0]["compute_s"]]
    return {
        "model": model_name, "device": str(device),
        "dtype": "bfloat16 autocast" if device.type == "cuda" else "float32",
        "batch_size": config.batch_size, "num_frames": config.num_frames, "image_size": int(model.input_resolution),
        "loader_workers": config.workers, "inputs": sorted(getattr(model, "inputs", ())),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        **summary(rows),
        "median_compute_s": round(compute_only[len(compute_only) // 2], 4),
        "samples_per_s_compute": round(config.batch_size / compute_only[len(compute_only) // 2], 3),
        "peak_rss_mib": round(peak_rss_mib(), 1), "rss_before_model_mib": round(before_model, 1),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if device.type == "cuda" else None,
        "loss": float(loss.item()),
        "what_if_persistent_workers": summary(steps[PERSISTENT]) if what_if else None,
        "steps": {name: [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows_]
                  for name, rows_ in steps.items()},
    }


def trainer_log_run(shards: str, epochs: int) -> dict:
    """`tiny` trained by the trainer itself for a few epochs; its own per-epoch data_wait records."""
    os.environ["TQDM_DISABLE"] = "1"   # no progress bars in the benchmark's output
    from trainer.config import resolve
    from trainer.train import train

    with tempfile.TemporaryDirectory() as tmp:
        config = resolve("tiny", "sample", {"shards": shards, "epochs": epochs, "runs_dir": tmp})
        start = time.perf_counter()
        train(config, run_dir=Path(tmp) / "run")
        seconds = time.perf_counter() - start
        records = [json.loads(line) for line in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
    return {"epochs": epochs, "seconds": round(seconds, 1), "loader_workers": config.workers,
            "log": [{k: r.get(k) for k in ("epoch", "seconds", "clips_per_s", "data_wait")} for r in records]}


def synthetic_gpu(model_name: str) -> dict:
    """bench/trainer_step.py's synthetic-batch step (GPU only): largest batch of 32, 16, 8 that fits."""
    import torch

    from trainer_step import measure

    runs = []
    for batch_size in (32, 16, 8):
        try:
            runs.append(measure(model_name, batch_size, 16, 5, torch.device("cuda")))
            break
        except torch.OutOfMemoryError:
            runs.append({"model": model_name, "batch_size": batch_size, "out_of_memory": True})
            torch.cuda.empty_cache()
    return {"device": torch.cuda.get_device_name(0), "runs": runs}


def _child(kind: str, args: tuple, queue) -> None:
    # A spawned process inherits "spawn" as its default start method, and the DataLoader would then
    # start its workers by spawning too (re-importing everything: ~1.5 s per epoch here). The trainer
    # runs in a plain process, whose loader workers fork: do the same.
    multiprocessing.set_start_method("fork", force=True)
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        fn = {"loop": real_loop, "log": trainer_log_run, "gpu": synthetic_gpu}[kind]
        queue.put(("ok", fn(*args)))
    except BaseException as err:  # noqa: BLE001 — reported to the parent, which records it
        import traceback

        queue.put(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=6)}"))


def in_child(kind: str, *args, timeout: float = 900) -> dict:
    """Run one measurement in a fresh process (spawned: its peak memory is its own)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_child, args=(kind, args, queue))
    start = time.perf_counter()
    process.start()
    try:
        status, value = queue.get(timeout=timeout)
    except Exception:  # noqa: BLE001 — queue.Empty: the child hung or died
        process.kill()
        return {"error": f"no result within {timeout} s", "wall_s": round(time.perf_counter() - start, 1)}
    process.join()
    if status != "ok":
        return {"error": value, "wall_s": round(time.perf_counter() - start, 1)}
    value["wall_s"] = round(time.perf_counter() - start, 1)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=Path, default=None)
    parser.add_argument("--models", nargs="+", default=["tiny", "fineclip-b16"])
    parser.add_argument("--quick", action="store_true", help="tiny: 2 epochs; fineclip-b16: 2 steps")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path, default=RESULTS / "trainer_speed.json")
    args = parser.parse_args()
    machine = machine_info()   # the load average before this benchmark adds its own
    os.chdir(ROOT)
    import torch

    from loader_speed import find_shards

    shards = str(args.shards or find_shards(args.work_dir))
    gpu = torch.cuda.is_available()
    results, trainer_log = {}, None
    for name in args.models:
        if name == "tiny":   # the real loader, and (not --quick) the persistent-workers what-if in turns
            plan = ({}, None, 2 if args.quick else 4, not args.quick)
        elif gpu:
            plan = ({"batch_size": 32}, 6, 1)   # the preset's 16 per process is what fits bf16 on 80 GB
        elif args.quick:
            results[name] = {"skipped": "--quick: a CPU step of this model takes about a minute"}
            log(f"{name}: skipped ({results[name]['skipped']})")
            continue
        else:   # ~40 s and ~11 GiB per step at batch 1 on 2 cores; batch 2 needs ~22 GiB
            plan = ({"batch_size": 1}, 2, 1)
        log(f"{name}: training with the real loader on {shards} ({'GPU' if gpu else 'CPU'})")
        results[name] = in_child("loop", name, shards, *plan)
        if "error" in results[name] and gpu and "OutOfMemory" in results[name]["error"]:
            results[name] = in_child("loop", name, shards, {"batch_size": 16}, 6, 1)
        if gpu and name != "tiny":
            results[name]["synthetic"] = in_child("gpu", name)
        if "error" in results[name]:
            log(f"{name}: FAILED: {results[name]['error'].splitlines()[0]}")
    if "tiny" in args.models:
        log("tiny: trainer.train for 2 epochs (the trainer's own data_wait)")
        trainer_log = in_child("log", shards, 2)

    tiny = results.get("tiny", {})
    share = tiny.get("epochs_after_first", {}).get("data_wait_share")
    report = {
        "benchmark": "trainer_speed", "quick": args.quick, "machine": machine,
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "shards": shards,
        "models": results, "trainer_log_tiny": trainer_log,
        "target": {"what": "data wait < 10% of step time at the documented worker count (tiny, sample, real loader, "
                           "epochs after the first)",
                   "loader_workers": tiny.get("loader_workers"), "data_wait_share": share,
                   "steady_state_share": tiny.get("after_first_batch_of_epoch", {}).get("data_wait_share"),
                   "all_steps_share": tiny.get("all_steps", {}).get("data_wait_share"),
                   "what_if_persistent_workers_share": ((tiny.get("what_if_persistent_workers") or {})
                                                        .get("epochs_after_first", {}).get("data_wait_share")),
                   "met": share is not None and share < 0.10},
    }
    write_json(args.out, report)
    rows = []
    for name, r in results.items():
        if "error" in r or "skipped" in r:
            rows.append((name, "error" if "error" in r else "skipped", None, None, None, None, None, None, None))
            continue
        rows.append((name, r["device"], r["batch_size"], r["loader_workers"], r["median_compute_s"],
                     r["samples_per_s_compute"], f"{100 * r['epochs_after_first']['data_wait_share']:.1f}%",
                     f"{100 * r['after_first_batch_of_epoch']['data_wait_share']:.1f}%", round(r["peak_rss_mib"])))
        if r.get("what_if_persistent_workers"):
            w = r["what_if_persistent_workers"]
            rows.append((f"{name}, what-if: persistent workers", r["device"], r["batch_size"], r["loader_workers"],
                         w["epochs_after_first"]["compute_s"], None,
                         f"{100 * w['epochs_after_first']['data_wait_share']:.1f}%",
                         f"{100 * w['after_first_batch_of_epoch']['data_wait_share']:.1f}%", None))
    print(table(("model", "device", "batch", "workers", "step s", "clips/s", "data wait (epochs 2+)", "within epoch",
                 "peak RSS MiB"), rows))
    if trainer_log and "log" in trainer_log:
        print("trainer.train log.jsonl data_wait per epoch (tiny): "
              + ", ".join(f"{r['data_wait']}" for r in trainer_log["log"]))
    print(f"target (data wait < 10% at {report['target']['loader_workers']} workers): {share} -> "
          f"{'met' if report['target']['met'] else 'NOT met'}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
