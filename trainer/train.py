"""`make train`: train a model on one fold of a dataset's shards and test it on the fold, under both protocols.

    python -m trainer.train --dataset sample [--model tiny] [--fold 1|all] [--set epochs=5 --set lr=1e-3] [--name NAME]
    python -m trainer.train --dataset dfew --model dferclip-b32 --set recipe=reference
    torchrun --nproc-per-node 8 -m trainer.train --dataset mafw --model fineclip-b16 --fold 1
    python -m trainer.train --resume runs/mafw-fineclip-b16-fold1

Each experiment and fold has a run folder of its own, named from the configuration or by
`--name` (trainer/run_dir.py); the same command again resumes a stopped run, reports a finished
one, and refuses a folder that holds another configuration unless `--overwrite`. `--fold all`
skips folds that finished.

One readable loop (nanoGPT / DiT style). The recipe (trainer/config.py, presets.yaml) chooses
AdamW with linear warm-up and cosine decay, or SGD with momentum and ×gamma steps at given
epochs; bf16 autocast or fp32 on a GPU; gradient clipping or none. DDP under torchrun (rank 0
alone logs and writes; every rank stops at the shortest rank's end of epoch); a non-finite
loss stops every rank with a clear message, leaving `last.pt` (written before the first epoch
and after every epoch) as the last good state; `--resume` continues exactly.

Model selection, both protocols reported in metrics.json (docs/training.md, "Protocols"):
- `val` (ours): the epoch with the best validation UAR on a split of the training folds (or on
  the dataset's own `val` partition, which is never trained on), never the test fold; with
  `val_fraction=0`, the last epoch; a zero-shot (description-supervised) run uses the
  validation description loss, never a label. Its weights are `best.pt`.
- `paper`: the epoch with the best test WAR, as DFER-CLIP's main.py keeps it and the papers
  report it: test-set selection, comparable with the published tables, not an unbiased
  estimate. Needs `paper_protocol` (on by default: one test pass per epoch).
Test clips that failed preprocessing, or that the loader could not read, are never dropped: they
count as wrong in both, and metrics.json says how many of each.
Under torchrun `batch_size` is per process, or (`global_batch`, the reference and paper recipes)
the global batch, each rank taking its share; the learning rates are never scaled with it. The run
log and metrics.json (`batch`) give the batch per process, the world size and the global batch.
The run folder holds config.json, log.jsonl, TensorBoard events, metrics.json, confusion.png, curves.png.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from trainer.config import TrainConfig, from_dict, parse_overrides, recipe_settings, resolve
from trainer.defaults import choose_model, dataset_name, default_shards
from trainer.data import dataset_folds, has_val_partition, make_loader, read_index, to_model_inputs, training_batches
from trainer.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, trainable_state
from trainer.metrics import evaluate, expected_test_clips, plot_confusion, plot_curves, unscored_test_labels
from trainer.run_dir import clear, plan as plan_run, record_start, run_folder, summary_folder, trim_log


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


def shutdown_distributed() -> None:
    """Destroy the process group, if any, once the objects that use it are gone. A DistributedDataParallel
    wrapper lives in reference cycles; left to the interpreter's exit, gloo's threads are torn down
    after the group and one rank in ten aborted ("terminate called without an active exception").
    Collecting first frees the wrapper while the group is still alive (0 aborts in 40 runs of
    tests/ddp_rank_draws.py, 2 in 28 without)."""
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------ schedule
def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / max(warmup, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def multistep_factor(epoch: int, milestones: tuple[int, ...], gamma: float) -> float:
    """torch's MultiStepLR stepped once per epoch: × gamma from each milestone epoch on (0-based
    epoch index; milestones 30 and 40 → epochs 0–29 at the base rate, 30–39 × 0.1, 40– × 0.01)."""
    return gamma ** sum(epoch >= m for m in milestones)


def schedule_factor(config: TrainConfig, step: int, epoch: int, warmup: int, total: int) -> float:
    """The learning-rate multiplier at this step: per epoch for `multistep` (the real epoch, not one
    estimated from the step, since dropped batches make epochs shorter than planned), per step for `cosine`."""
    if config.schedule == "multistep":
        return multistep_factor(epoch, config.lr_milestones, config.lr_gamma)
    return lr_factor(step, warmup, total)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimiser (AdamW, or SGD with momentum) over the model's parameter groups (or
    all trainable parameters at the base lr); each group remembers its `initial_lr` for the schedule."""
    groups = model.param_groups(config.lr) if hasattr(model, "param_groups") else \
        [{"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr}]
    for group in groups:
        group["initial_lr"] = group["lr"]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
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
    unscored: list[int] = field(default_factory=list)   # labels of test clips that failed preprocessing
    expected_test: dict = field(default_factory=dict)   # key -> label of every test clip the shards hold
    batch: dict = field(default_factory=dict)           # the batch per process, world size, global batch
    descriptions: dict | None = None                    # DFER-CLIP: where the class descriptions came from
    start_epoch: int = 0
    step: int = 0
    best_uar: float = -math.inf   # the `val` protocol's best score so far (validation UAR, or -description loss)
    best_epoch: int = 0         # ... and its epoch (1-based; 0: none yet)
    best_test: dict = field(default_factory=dict)   # the `paper` protocol: {"epoch", "test"} of the best test WAR
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
            "best_uar": self.best_uar, "best_epoch": self.best_epoch, "best_test": self.best_test,
            "history": self.history, "rng": rng_state()})

    def evaluate(self, split: str) -> dict:
        test = split == "test"
        return evaluate(self.model, self.loaders[split], self.device, self.classes, self.autocast,
                        normalise=self.config.normalise, unscored=self.unscored if test else None,
                        expected=self.expected_test if test else None)

    @property
    def has_validation(self) -> bool:
        return "val" in self.loaders

    @property
    def own_val(self) -> bool:
        """Whether validation reads the dataset's own val partition (rather than a split of the training ones)."""
        return self.has_validation and self.loaders["val"].dataset.own_val

    @property
    def zero_shot(self) -> bool:
        return getattr(getattr(self.model, "config", None), "supervision", "labels") == "descriptions"


def prepare_run(config: TrainConfig, run_dir: Path) -> Run:
    """Processes, seeds, the model on its device, the three loaders, the optimiser and the schedule."""
    rank, world, device = setup_distributed()
    index = read_index(config.shard_dir)
    classes = index["classes"]
    batch = config.batch_record(world)             # refuses a world size that cannot share a global batch
    descriptions = config.descriptions_source()    # stops here when the reference descriptions are missing
    seed_everything(config.seed * max(world, 1) + rank)
    model = config.build_model(classes).to(device)
    data = config.data_config(model, world)
    splits = ("train", "val", "test") if config.val_fraction > 0 or has_val_partition(index) else ("train", "test")
    loaders = {split: make_loader(data, split, classes) for split in splits}
    steps_per_epoch = max(1, math.ceil(len(loaders["train"].dataset) / batch["global"]))
    ddp_model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if world > 1 else model
    return Run(config=config, run_dir=run_dir, rank=rank, world=world, device=device, classes=classes, model=model,
               ddp_model=ddp_model, loaders=loaders, optimizer=make_optimizer(model, config),
               autocast=config.autocast(device), steps_per_epoch=steps_per_epoch,
               total_steps=steps_per_epoch * config.epochs, warmup=int(config.warmup_epochs * steps_per_epoch),
               unscored=unscored_test_labels(config.shard_dir, loaders["test"].dataset.partitions, classes),
               expected_test=expected_test_clips(config.shard_dir, loaders["test"].dataset.partitions, classes),
               batch=batch, descriptions=descriptions)


def restore(run: Run, folder: Path) -> None:
    """Continue from `folder`/last.pt: weights, optimiser, position in the schedule, RNG states."""
    state = load_checkpoint(folder / "last.pt")
    missing = run.model.load_state_dict(state["model"], strict=False)
    assert not missing.unexpected_keys, missing.unexpected_keys
    run.optimizer.load_state_dict(state["optimizer"])
    run.start_epoch, run.step, run.best_uar, run.history = (state["epoch"] + 1, state["step"], state["best_uar"],
                                                            state["history"])
    run.best_epoch, run.best_test = state.get("best_epoch", 0), state.get("best_test", {})
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
    c, b = run.config, run.batch
    descriptions = (f", class descriptions {run.descriptions['source']}"
                    f"{' (' + run.descriptions['file'] + ')' if run.descriptions['file'] else ''}"
                    if run.descriptions else "")
    line = (f"{c.model} on {c.dataset} fold {c.fold}: {run.trainable_parameters / 1e6:.2f} M trainable "
            f"parameters, {len(run.loaders['train'].dataset)} training clips, {run.steps_per_epoch} steps/epoch, "
            f"recipe {c.recipe} ({c.optimizer}, {c.schedule}), device {run.device}"
            f"{' bf16' if run.device.type == 'cuda' and c.precision == 'bf16' else ' fp32'}, "
            f"batch {b['global']} = {b['per_rank']} per process x {b['world_size']} "
            f"(learning rates {b['learning_rate_rule']}){descriptions}"
            f"{f', {len(run.unscored)} test clips failed preprocessing (scored as wrong)' if run.unscored else ''}"
            f" -> {run.run_dir}")
    print(line)


PROGRESS_LINE_S = 60.0   # without a terminal, a progress line at most this often within an epoch


def progress_line(epoch: int, epochs: int, step: int, steps: int, elapsed: float, clips: int, loss: float,
                  data_time: float) -> str:
    """One line of an epoch's progress for a log file: steps done, clips/s, the epoch's time left."""
    from pipeline.run.progress import duration

    left = elapsed / max(step, 1) * max(steps - step, 0)
    return (f"[{time.strftime('%H:%M:%S')}] epoch {epoch + 1}/{epochs}: step {step}/{steps}, "
            f"{clips / max(elapsed, 1e-9):.1f} clips/s, data wait {100 * data_time / max(elapsed, 1e-9):.0f} %, "
            f"loss {loss:.3f}, {duration(left)} left in the epoch")


def train_epoch(run: Run, epoch: int) -> dict:
    """One pass over the training clips; returns the epoch's loss and throughput figures."""
    config, loader = run.config, run.loaders["train"]
    loader.dataset.set_epoch(epoch)
    losses, seen, data_time, started = [], 0, 0.0, time.perf_counter()
    skipped, faceless = {}, {}   # per loader worker: its running counts (each batch comes from one worker)
    bar = None
    from pipeline.run.progress import is_terminal

    lines = run.main_process and not is_terminal(sys.stderr)   # a log file: whole lines, never a redrawn bar
    last_line = started
    if run.main_process and not lines:
        from tqdm import tqdm

        bar = tqdm(total=run.steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", dynamic_ncols=True,
                   leave=False)

    def counted(batches):
        """The loader's batches as they come from the workers, their counters read on the way."""
        for batch in batches:
            skipped[batch.get("worker", 0)] = int(batch.get("skipped", 0))
            faceless[batch.get("worker", 0)] = int(batch.get("faceless", 0))
            yield batch

    fetched = time.perf_counter()
    batches = training_batches(loader, counted(loader))
    while True:
        batch = next(batches, None)
        if not every_rank_has_a_batch(batch is not None, run.world, run.device):
            break
        data_time += time.perf_counter() - fetched
        for group in run.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * schedule_factor(config, run.step, epoch, run.warmup,
                                                                run.total_steps)
        # uint8 images -> normalised float32 on the device
        batch = to_model_inputs(batch, run.device, normalise=config.normalise)
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
        if bar is not None:
            elapsed = time.perf_counter() - started
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{run.optimizer.param_groups[0]['lr']:.2e}",
                            clips_s=f"{seen * run.world / elapsed:.1f}", data=f"{100 * data_time / elapsed:.0f}%")
            bar.update(1)
        if lines and time.perf_counter() - last_line >= PROGRESS_LINE_S:
            last_line = time.perf_counter()
            print(progress_line(epoch, config.epochs, len(losses), run.steps_per_epoch, last_line - started,
                                seen * run.world, float(np.mean(losses[-20:])), data_time), flush=True)
        if run.main_process:
            if run.step % config.log_every == 0:
                run.writer.add_scalar("train/loss", loss.item(), run.step)
                run.writer.add_scalar("train/lr", run.optimizer.param_groups[0]["lr"], run.step)
                for name, value in out.get("parts", {}).items():
                    run.writer.add_scalar(f"train/{name}", float(value), run.step)
        fetched = time.perf_counter()
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - started
    counts = [seen, sum(skipped.values()), sum(faceless.values())]
    if run.world > 1:   # every rank's share: the clips, bad samples and faceless clips of the whole step count
        totals = torch.tensor(counts, dtype=torch.float64, device=run.device)
        dist.all_reduce(totals)
        counts = [int(v) for v in totals.tolist()]
    return {"train_loss": float(np.mean(losses)) if losses else None, "seconds": elapsed, "seen": counts[0],
            "data_time": data_time, "skipped_samples": counts[1], "faceless_clips": counts[2]}


def select(run: Run, epoch: int, val: dict | None, test: dict | None) -> bool:
    """Update both protocols' choices with this epoch's scores; whether it is the `val` protocol's
    new best (then best.pt is written)."""
    if test is not None and test["war"] > run.best_test.get("test", {}).get("war", -1.0):
        run.best_test = {"epoch": epoch + 1, "test": test}
    if val is None or not val["samples"]:
        score = float(epoch)                          # no validation split: the last epoch
    elif run.zero_shot:
        loss = val.get("description_loss")            # never a label
        score = -loss if loss is not None else float(epoch)
    else:
        score = val["uar"]
    if score > run.best_uar:
        run.best_uar, run.best_epoch = score, epoch + 1
        return True
    return False


def end_epoch(run: Run, epoch: int, figures: dict) -> None:
    """Validate (and test, for the paper protocol), record the epoch, keep best.pt and last.pt."""
    val = run.evaluate("val") if run.has_validation else None
    test = run.evaluate("test") if run.config.paper_protocol else None
    elapsed = figures["seconds"]
    record = {"epoch": epoch + 1, "step": run.step, "train_loss": figures["train_loss"],
              "val_uar": val["uar"] if val else None, "val_war": val["war"] if val else None,
              "seconds": round(elapsed, 2), "clips": figures["seen"], "global_batch": run.batch["global"],
              "clips_per_s": round(figures["seen"] / max(elapsed, 1e-9), 2),
              "data_wait": round(figures["data_time"] / max(elapsed, 1e-9), 3),
              "skipped_samples": figures["skipped_samples"], "faceless_clips": figures["faceless_clips"]}
    if val and val.get("description_loss") is not None:
        record["val_description_loss"] = val["description_loss"]
    if test:
        record.update(test_uar=test["uar"], test_war=test["war"])
    run.history.append(record)
    improved = select(run, epoch, val, test)
    if not run.main_process:
        return
    print(json.dumps(record))
    run.log.write(json.dumps(record) + "\n")
    run.log.flush()
    for name in ("val_uar", "val_war", "test_uar", "test_war", "val_description_loss"):
        if record.get(name) is not None:
            run.writer.add_scalar(name.replace("_", "/", 1), record[name], epoch + 1)
    if improved:
        run.checkpoint("best.pt", epoch)
    run.checkpoint("last.pt", epoch)


def val_selection(run: Run) -> str:
    if not run.has_validation:
        return "last epoch (val_fraction=0: no validation split)"
    if run.zero_shot:
        return "lowest validation description loss (zero-shot: no label is used)"
    return "best UAR on the val partition" if run.own_val else "best validation UAR"


def final_test(run: Run) -> dict:
    """Both protocols on the held-out fold: `val` loads best.pt and tests it; `paper` is the test
    pass of the best-test-WAR epoch. metrics.json, confusion.png, curves.png."""
    config = run.config
    if run.world > 1:
        dist.barrier()   # rank 0 alone writes best.pt: every rank reads it once it is there
    if (run.run_dir / "best.pt").exists():
        run.model.load_state_dict(load_checkpoint(run.run_dir / "best.pt")["model"], strict=False)
    test = run.evaluate("test")
    trained_on = ("all training folds" if not run.has_validation
                  else "the train partition (the val partition validates)" if run.own_val
                  else f"training folds less a {config.val_fraction:.0%} validation split")
    protocols = {"val": {"selection": val_selection(run), "epoch": run.best_epoch, "trained_on": trained_on,
                         "test": test}}
    if run.best_test:
        protocols["paper"] = {"selection": "best test WAR over the epochs (test-set selection, as the papers "
                                           "report; not an unbiased estimate)",
                              "epoch": run.best_test["epoch"], "trained_on": trained_on,
                              "test": run.best_test["test"]}
    result = {"dataset": config.dataset, "model": config.model, "recipe": config.recipe, "fold": config.fold,
              "recipe_settings": recipe_settings(config), "batch": run.batch,
              "class_descriptions": run.descriptions, "shards": shards_record(config),
              "test": test, "protocols": protocols, "best_val_uar": (run.best_uar if run.has_validation and not run.zero_shot and run.best_epoch
                               else None),
              "unscored_test_clips": test["unscored"],
              "failed_test_clips": {"preprocessing": len(run.unscored), "loader": test["failed_in_loader"]},
              "trainable_parameters": run.trainable_parameters, "epochs": len(run.history)}
    if run.main_process:
        (run.run_dir / "metrics.json").write_text(json.dumps(result, indent=1) + "\n")
        plot_confusion(np.array(test["confusion_matrix"]), run.classes, run.run_dir / "confusion.png",
                       f"{config.dataset} fold {config.fold}: UAR {test['uar']:.1f} WAR {test['war']:.1f}")
        if run.history:
            plot_curves(run.history, run.run_dir / "curves.png")
        lines = [f"test fold {config.fold}, protocol {name} (epoch {p['epoch']}, {p['selection']}): "
                 f"UAR {p['test']['uar']:.2f}  WAR {p['test']['war']:.2f}" for name, p in protocols.items()]
        if run.unscored or test["failed_in_loader"]:
            lines.append(f"{len(run.unscored)} test clips failed preprocessing and {test['failed_in_loader']} in the "
                         "loader; they count as wrong")
        print("\n".join(lines) + f"  -> {run.run_dir}/metrics.json")
    return result


def shards_record(config: TrainConfig) -> dict:
    """What the run's shards were made with, as far as a recipe cares: the crop and the describer
    (FineCLIPER's `paper` recipe wants Video-LLaVA with `--describer-setting reference`)."""
    settings = read_index(config.shard_dir).get("config") or {}
    options = settings.get("describer_options") or {}
    record = {"folder": str(config.shard_dir), "crop": settings.get("crop", "detect"),
              "describer": settings.get("describer"), "describer_setting": options.get("setting")}
    if config.recipe == "paper":
        record["describer_is_the_papers"] = (record["describer"] == "videollava"
                                             and record["describer_setting"] == "reference")
    return record


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
        if run.main_process:
            trim_log(run.run_dir, run.start_epoch)
            print(f"resuming after epoch {run.start_epoch} of {config.epochs}")
    open_run_folder(run)
    try:
        if run.main_process and not resume:
            record_start(run.run_dir, config, run.world)   # run.json: the shards and world size it begins with
            run.checkpoint("last.pt", -1)  # the state before training: a good state to return to from the start
        for epoch in range(run.start_epoch, config.epochs):
            if stop_after is not None and epoch >= stop_after:
                if run.main_process:
                    print(f"stopped after epoch {epoch}; the same command resumes it (or --resume {run.run_dir})")
                return None
            end_epoch(run, epoch, train_epoch(run, epoch))
        return final_test(run)
    finally:
        close_run(run)


def fold_summary(results: list[dict]) -> dict:
    """Mean ± std (population) of UAR and WAR over folds, per protocol."""
    summary: dict = {}
    for protocol in ("val", "paper"):
        if not all(protocol in r.get("protocols", {}) for r in results):
            continue
        summary[protocol] = {"selection": results[0]["protocols"][protocol]["selection"]}
        for metric in ("uar", "war"):
            values = np.array([r["protocols"][protocol]["test"][metric] for r in results])
            summary[protocol][metric] = {"mean": float(values.mean()), "std": float(values.std()),
                                         "per_fold": values.tolist()}
    return summary


def report_finished(folder: Path) -> dict:
    """A finished run's metrics, printed as training would have ended."""
    result = json.loads((folder / "metrics.json").read_text())
    for name, p in result.get("protocols", {}).items():
        print(f"test fold {result['fold']}, protocol {name} (epoch {p['epoch']}): "
              f"UAR {p['test']['uar']:.2f}  WAR {p['test']['war']:.2f}")
    return result


def run_experiment(config: TrainConfig, name: str | None = None, overwrite: bool = False,
                   stop_after: int | None = None) -> dict | None:
    """Fold `config.fold` of the experiment `name` in its run folder (trainer/run_dir.py): started,
    resumed where it stopped, or reported when finished; refused (RunConflict) when the folder holds
    another configuration, unless `overwrite`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    plan = plan_run(config, run_folder(config, name), world, overwrite)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{plan.folder}: {plan.why}")
    if plan.action == "finished":
        return report_finished(plan.folder)
    if plan.clear and int(os.environ.get("RANK", "0")) == 0:
        clear(plan.folder)
    return train(config, resume=plan.folder if plan.action == "resume" else None, run_dir=plan.folder,
                 stop_after=stop_after)


def train_folds(config: TrainConfig, folds: list[int], name: str | None = None, overwrite: bool = False,
                stop_after: int | None = None) -> dict | None:
    """Each fold in turn (a finished fold is reported, not trained again), then mean ± std of UAR and WAR
    over them per protocol (the 5-fold protocol). The top-level uar/war are the `val` protocol's."""
    results = [run_experiment(TrainConfig(**{**config.to_dict(), "fold": k}), name, overwrite, stop_after)
               for k in folds]
    if any(r is None for r in results):   # stopped early (--stop-after): no summary yet
        return None
    protocols = fold_summary(results)
    summary = {"dataset": config.dataset, "model": config.model, "recipe": config.recipe, "folds": folds,
               "uar": protocols["val"]["uar"], "war": protocols["val"]["war"], "protocols": protocols}
    if int(os.environ.get("RANK", "0")) != 0:
        return summary
    out = summary_folder(config, name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    for protocol, p in protocols.items():
        print(f"{len(folds)} folds, protocol {protocol}: UAR {p['uar']['mean']:.2f} ± {p['uar']['std']:.2f}  "
              f"WAR {p['war']['mean']:.2f} ± {p['war']['std']:.2f}")
    print(f"-> {out}/metrics.json")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.train", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="sample", help="mafw | dfew | ferv39k | sample | path/to/manifest.csv")
    parser.add_argument("--model", default=None,
                        help="default: tiny for the sample and your own manifests; named for mafw, dfew, ferv39k")
    parser.add_argument("--fold", default="1", help="1..5, or all (the 5-fold protocol)")
    parser.add_argument("--shards", default="", help="dataset folder of shards (default shards/<dataset>)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration value (repeatable), e.g. --set epochs=5")
    parser.add_argument("--name", help="the experiment's name: its run folders are <runs_dir>/<name>-fold<k> "
                                       "(default: dataset, model, recipe and a hash of the changed settings)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in a run folder that holds another configuration (or a finished run)")
    parser.add_argument("--resume", type=Path, help="a run folder to continue from its last.pt")
    parser.add_argument("--stop-after", type=int, help="stop after this many epochs (rerun the command to resume)")
    parser.add_argument("--reuse", action="store_true",
                        help="kept for older scripts: a finished run of the same configuration is always reused")
    args = parser.parse_args(argv)
    try:
        if args.resume:
            config = from_dict(json.loads((args.resume / "config.json").read_text()))
            train(config, resume=args.resume, stop_after=args.stop_after)
            return 0
        dataset = dataset_name(args.dataset)
        model, why = choose_model(args.model, args.dataset)
        if not args.model and int(os.environ.get("RANK", "0")) == 0:
            print(f"model {model} ({why})")
        overrides = parse_overrides(args.set, args.shards)
        index = read_index(overrides.get("shards") or default_shards(args.dataset))
        if args.fold == "all":
            train_folds(resolve(model, dataset, overrides), dataset_folds(index), args.name, args.overwrite,
                        args.stop_after)
        else:
            run_experiment(resolve(model, dataset, {**overrides, "fold": int(args.fold)}), args.name,
                           args.overwrite, args.stop_after)
    except (FileNotFoundError, ValueError, NonFiniteLoss) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
