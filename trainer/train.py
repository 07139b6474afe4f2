"""`make train`: train a model on one fold of a dataset's shards, select on validation, test on the fold.

    python -m trainer.train --dataset sample --model tiny [--fold 1|all] [--set epochs=5 --set lr=1e-3]
    torchrun --nproc-per-node 8 -m trainer.train --dataset mafw --model fineclip-b16 --fold 1
    python -m trainer.train --resume runs/mafw-fineclip-b16-fold1

One readable loop (nanoGPT / DiT style): AdamW with linear warm-up and cosine decay, bf16
autocast on GPU, gradient clipping, DDP under torchrun (rank 0 alone logs and writes), a
non-finite loss stops every rank with a clear message, leaving `last.pt` (written before the
first epoch and after every epoch) as the last good state. Every epoch writes
`last.pt` atomically (model's trainable weights, optimiser, scheduler, epoch, RNG states)
and `best.pt` when validation UAR improves; `--resume` continues exactly. The run folder
holds config.json, log.jsonl, TensorBoard events, metrics.json, confusion.png, curves.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from trainer.config import TrainConfig, from_dict, parse_value, resolve
from trainer.data import make_loader, read_index, to_model_inputs
from trainer.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, trainable_state
from trainer.metrics import evaluate, plot_confusion, plot_curves


class NonFiniteLoss(RuntimeError):
    pass


# ------------------------------------------------------------------------------ processes
def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------ schedule
def lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the model's parameter groups (or all trainable parameters at the base lr);
    each group remembers its `initial_lr` for the schedule."""
    groups = model.param_groups(config.lr) if hasattr(model, "param_groups") else \
        [{"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr}]
    for group in groups:
        group["initial_lr"] = group["lr"]
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, grad_clip: float) -> None:
    """Backward, clip the gradient norm (when `grad_clip`), step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
    optimizer.step()


def every_rank_has_a_batch(has_batch: bool, world: int, device: torch.device) -> bool:
    """Whether every rank still has a batch. Ranks read disjoint shards, so their batch counts
    differ when the partitions do; a rank that stepped alone would wait forever in DDP's gradient
    all-reduce. So every rank stops at the shortest rank's end (the others drop their last batches)."""
    if world == 1:
        return has_batch
    flag = torch.tensor([1.0 if has_batch else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def all_finite(loss: torch.Tensor, world: int) -> bool:
    """Whether the loss is finite on every rank (all ranks must stop together, or DDP hangs)."""
    finite = torch.isfinite(loss.detach()).float()
    if world > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


# ------------------------------------------------------------------------------ training
@dataclass
class Run:
    """Everything one training run holds between its steps."""

    config: TrainConfig
    run_dir: Path
    rank: int
    world: int
    device: torch.device
    classes: list[str]
    model: torch.nn.Module
    ddp_model: torch.nn.Module
    loaders: dict[str, torch.utils.data.DataLoader]
    optimizer: torch.optim.Optimizer
    autocast: Callable
    steps_per_epoch: int
    total_steps: int
    warmup: int
    start_epoch: int = 0
    step: int = 0
    best_uar: float = -1.0
    history: list[dict] = field(default_factory=list)
    writer: Any = None
    log: Any = None

    @property
    def main_process(self) -> bool:
        return self.rank == 0

    @property
    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def checkpoint(self, name: str, epoch: int) -> None:
        save_checkpoint(self.run_dir / name, {
            "config": self.config.to_dict(), "classes": self.classes, "model": trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(), "epoch": epoch, "step": self.step,
            "best_uar": self.best_uar, "history": self.history, "rng": rng_state()})


def prepare_run(config: TrainConfig, run_dir: Path) -> Run:
    """Processes, seeds, the model on its device, the three loaders, the optimiser and the schedule."""
    rank, world, device = setup_distributed()
    classes = read_index(config.shard_dir)["classes"]
    seed_everything(config.seed * max(world, 1) + rank)
    model = config.build_model(classes).to(device)
    data = config.data_config(model)
    loaders = {split: make_loader(data, split, classes) for split in ("train", "val", "test")}
    steps_per_epoch = max(1, math.ceil(len(loaders["train"].dataset) / (config.batch_size * world)))
    ddp_model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if world > 1 else model
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    return Run(config=config, run_dir=run_dir, rank=rank, world=world, device=device, classes=classes, model=model,
               ddp_model=ddp_model, loaders=loaders, optimizer=make_optimizer(model, config), autocast=autocast,
               steps_per_epoch=steps_per_epoch, total_steps=steps_per_epoch * config.epochs,
               warmup=int(config.warmup_epochs * steps_per_epoch))


def restore(run: Run, folder: Path) -> None:
    """Continue from `folder`/last.pt: weights, optimiser, position in the schedule, RNG states."""
    state = load_checkpoint(folder / "last.pt")
    missing = run.model.load_state_dict(state["model"], strict=False)
    assert not missing.unexpected_keys, missing.unexpected_keys
    run.optimizer.load_state_dict(state["optimizer"])
    run.start_epoch, run.step, run.best_uar, run.history = (state["epoch"] + 1, state["step"], state["best_uar"],
                                                            state["history"])
    set_rng_state(state["rng"])


def open_run_folder(run: Run) -> None:
    """config.json, TensorBoard and log.jsonl (rank 0 only), and the opening line of the run."""
    if not run.main_process:
        return
    run.run_dir.mkdir(parents=True, exist_ok=True)
    (run.run_dir / "config.json").write_text(json.dumps(run.config.to_dict(), indent=1) + "\n")
    from torch.utils.tensorboard import SummaryWriter

    run.writer = SummaryWriter(str(run.run_dir / "tensorboard"))
    run.log = (run.run_dir / "log.jsonl").open("a")
    c = run.config
    print(f"{c.model} on {c.dataset} fold {c.fold}: {run.trainable_parameters / 1e6:.2f} M trainable "
          f"parameters, {len(run.loaders['train'].dataset)} training clips, {run.steps_per_epoch} steps/epoch, "
          f"device {run.device}{' bf16' if run.device.type == 'cuda' else ''}, world size {run.world} -> {run.run_dir}")


def train_epoch(run: Run, epoch: int) -> dict:
    """One pass over the training clips; returns the epoch's loss and throughput figures."""
    config, loader = run.config, run.loaders["train"]
    loader.dataset.set_epoch(epoch)
    losses, seen, data_time, started, skipped = [], 0, 0.0, time.perf_counter(), 0
    bar = None
    if run.main_process:
        from tqdm import tqdm

        bar = tqdm(total=run.steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", dynamic_ncols=True,
                   leave=False)
    fetched = time.perf_counter()
    batches = iter(loader)
    while True:
        batch = next(batches, None)
        if not every_rank_has_a_batch(batch is not None, run.world, run.device):
            break
        data_time += time.perf_counter() - fetched
        for group in run.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * lr_factor(run.step, run.warmup, run.total_steps)
        batch = to_model_inputs(batch, run.device)   # uint8 images -> normalised float32 on the device
        with run.autocast():
            out = run.ddp_model(batch)
        loss = out["loss"]
        if not all_finite(loss, run.world):  # every rank stops here; last.pt is never overwritten
            raise NonFiniteLoss(
                f"the loss became {loss.item()} at epoch {epoch + 1}, step {run.step} (clips "
                f"{', '.join(batch['keys'][:8])}). The last good state is {run.run_dir / 'last.pt'} "
                f"({'before training' if epoch == 0 else f'end of epoch {epoch}'}): lower lr in "
                f"{run.run_dir / 'config.json'} and continue with --resume {run.run_dir}, or check those clips")
        optimizer_step(loss, run.optimizer, config.grad_clip)
        run.step += 1
        losses.append(loss.item())
        seen += len(batch["keys"])
        skipped = int(batch.get("skipped", 0))
        if bar is not None:
            elapsed = time.perf_counter() - started
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{run.optimizer.param_groups[0]['lr']:.2e}",
                            clips_s=f"{seen * run.world / elapsed:.1f}", data=f"{100 * data_time / elapsed:.0f}%")
            bar.update(1)
            if run.step % config.log_every == 0:
                run.writer.add_scalar("train/loss", loss.item(), run.step)
                run.writer.add_scalar("train/lr", run.optimizer.param_groups[0]["lr"], run.step)
                for name, value in out.get("parts", {}).items():
                    run.writer.add_scalar(f"train/{name}", float(value), run.step)
        fetched = time.perf_counter()
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - started
    return {"train_loss": float(np.mean(losses)) if losses else None, "seconds": elapsed, "seen": seen,
            "data_time": data_time, "skipped_samples": skipped}


def end_epoch(run: Run, epoch: int, figures: dict) -> None:
    """Validate, record the epoch, keep best.pt (best validation UAR) and last.pt."""
    val = evaluate(run.model, run.loaders["val"], run.device, run.classes, run.autocast)
    elapsed = figures["seconds"]
    record = {"epoch": epoch + 1, "step": run.step, "train_loss": figures["train_loss"],
              "val_uar": val["uar"], "val_war": val["war"], "seconds": round(elapsed, 2),
              "clips_per_s": round(figures["seen"] * run.world / max(elapsed, 1e-9), 2),
              "data_wait": round(figures["data_time"] / max(elapsed, 1e-9), 3),
              "skipped_samples": figures["skipped_samples"]}
    run.history.append(record)
    if not run.main_process:
        return
    print(json.dumps(record))
    run.log.write(json.dumps(record) + "\n")
    run.log.flush()
    run.writer.add_scalar("val/uar", val["uar"], epoch + 1)
    run.writer.add_scalar("val/war", val["war"], epoch + 1)
    if val["uar"] > run.best_uar:
        run.best_uar = val["uar"]
        run.checkpoint("best.pt", epoch)
    run.checkpoint("last.pt", epoch)


def final_test(run: Run) -> dict:
    """The best-on-validation model on the held-out fold; metrics.json, confusion.png, curves.png."""
    config = run.config
    if run.world > 1:
        dist.barrier()   # rank 0 alone writes best.pt: every rank reads it once it is there
    if (run.run_dir / "best.pt").exists():
        run.model.load_state_dict(load_checkpoint(run.run_dir / "best.pt")["model"], strict=False)
    test = evaluate(run.model, run.loaders["test"], run.device, run.classes, run.autocast)
    result = {"dataset": config.dataset, "model": config.model, "fold": config.fold, "test": test,
              "best_val_uar": run.best_uar, "trainable_parameters": run.trainable_parameters,
              "epochs": len(run.history)}
    if run.main_process:
        (run.run_dir / "metrics.json").write_text(json.dumps(result, indent=1) + "\n")
        plot_confusion(np.array(test["confusion_matrix"]), run.classes, run.run_dir / "confusion.png",
                       f"{config.dataset} fold {config.fold}: UAR {test['uar']:.1f} WAR {test['war']:.1f}")
        if run.history:
            plot_curves(run.history, run.run_dir / "curves.png")
        print(f"test fold {config.fold}: UAR {test['uar']:.2f}  WAR {test['war']:.2f}  -> {run.run_dir}/metrics.json")
    return result


def close_run(run: Run) -> None:
    if run.writer is not None:
        run.writer.close()
    if run.log is not None:
        run.log.close()


def train(config: TrainConfig, resume: Path | None = None, run_dir: Path | None = None,
          stop_after: int | None = None) -> dict | None:
    """Train (or resume) one fold; returns the test metrics. `stop_after` ends the run after that many
    epochs of its schedule, leaving last.pt to `--resume` from (time-limited or preemptible jobs)."""
    run = prepare_run(config, run_dir or (resume if resume else Path(config.runs_dir) / config.run_name()))
    if resume:
        restore(run, Path(resume))
    open_run_folder(run)
    try:
        if run.main_process and not resume:
            run.checkpoint("last.pt", -1)  # the state before training: a good state to return to from the start
        for epoch in range(run.start_epoch, config.epochs):
            if stop_after is not None and epoch >= stop_after:
                if run.main_process:
                    print(f"stopped after epoch {epoch}; continue with --resume {run.run_dir}")
                return None
            end_epoch(run, epoch, train_epoch(run, epoch))
        return final_test(run)
    finally:
        close_run(run)


def train_folds(config: TrainConfig, folds: list[int]) -> dict:
    """Each fold in turn, then mean ± std of UAR and WAR over them (the 5-fold protocol)."""
    results = [train(TrainConfig(**{**config.to_dict(), "fold": k})) for k in folds]
    summary = {"dataset": config.dataset, "model": config.model, "folds": folds}
    for metric in ("uar", "war"):
        values = np.array([r["test"][metric] for r in results])
        summary[metric] = {"mean": float(values.mean()), "std": float(values.std()), "per_fold": values.tolist()}
    out = Path(config.runs_dir) / f"{config.dataset}-{config.model}-all"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{len(folds)} folds: UAR {summary['uar']['mean']:.2f} ± {summary['uar']['std']:.2f}  "
          f"WAR {summary['war']['mean']:.2f} ± {summary['war']['std']:.2f}  -> {out}/metrics.json")
    return summary


def finished_run(config: TrainConfig) -> bool:
    """Whether the run folder of `config` holds a finished run of exactly this configuration,
    made after the shards it read were last written."""
    run_dir = Path(config.runs_dir) / config.run_name()
    metrics, saved = run_dir / "metrics.json", run_dir / "config.json"
    index = config.shard_dir / "index.json"
    if not (metrics.is_file() and saved.is_file() and index.is_file()):
        return False
    as_recorded = json.loads(json.dumps(config.to_dict()))   # tuples become lists in JSON
    return json.loads(saved.read_text()) == as_recorded and metrics.stat().st_mtime > index.stat().st_mtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.train", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="sample")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--fold", default="1", help="1..5, or all (the 5-fold protocol)")
    parser.add_argument("--shards", default="", help="dataset folder of shards (default shards/<dataset>)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration value (repeatable), e.g. --set epochs=5")
    parser.add_argument("--resume", type=Path, help="a run folder to continue from its last.pt")
    parser.add_argument("--stop-after", type=int, help="stop after this many epochs (resume later)")
    parser.add_argument("--reuse", action="store_true",
                        help="skip training when the run folder already holds metrics.json for the same "
                             "configuration, newer than the shards (make demo's second run)")
    args = parser.parse_args(argv)
    try:
        if args.resume:
            config = from_dict(json.loads((args.resume / "config.json").read_text()))
            train(config, resume=args.resume, stop_after=args.stop_after)
            return 0
        overrides = {}
        for item in args.set:
            key, _, value = item.partition("=")
            overrides[key.strip()] = parse_value(value)
        if args.shards:
            overrides["shards"] = args.shards
        index = read_index(overrides.get("shards") or f"shards/{args.dataset}")
        if args.fold == "all":
            folds = sorted(int(p[4:]) for p in index["partitions"] if p.startswith("fold")) or [1]
            train_folds(resolve(args.model, args.dataset, overrides), folds)
        else:
            config = resolve(args.model, args.dataset, {**overrides, "fold": int(args.fold)})
            if args.reuse and finished_run(config):
                print(f"reusing {Path(config.runs_dir) / config.run_name()}: trained already on these shards "
                      "with this configuration")
                return 0
            train(config, stop_after=args.stop_after)
    except (FileNotFoundError, ValueError, NonFiniteLoss) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
