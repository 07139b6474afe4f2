"""Run folders: one per experiment and fold, named from the configuration; a rerun resumes it or is refused.

A run of fold k lives in `<runs_dir>/<name>-fold<k>` (`FOLD=all` adds `<name>-all` with the
mean ± std). `--name` (NAME=) names the experiment; by default the name is the configuration's
stem (`<dataset>-<model>`, with `-<recipe>` for a recipe other than `ours`) followed, when any
setting differs from the presets of that model, dataset and recipe, by `-<hash>`: six hex digits
of the SHA-256 of those settings (`--set` overrides, another shard folder). So two configurations
never share a folder, and the plain command keeps its plain name (`runs/sample-tiny-fold1`).
`runs_dir` says where runs live, not what they are: it is neither hashed nor compared.

What the same command finds in an existing folder (`plan`):
- the same configuration (every setting: model, data, seed) and the same shards (the SHA-256 of
  every shard, from index.json) as the run began with: finished (metrics.json): reported, not
  trained again; stopped with a `last.pt`: resumed from it (weights, optimiser, schedule position
  and RNG states, `trainer.train.restore`) when the world size is the one it began with;
  stopped before its first checkpoint: started again;
- anything else: refused, naming what differs, unless `overwrite` (OVERWRITE=1), which empties the
  folder and starts over.
What the run began with besides its configuration is kept in `run.json` beside `config.json`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig, resolve

RUN_RECORD = "run.json"
UNCOMPARED = ("runs_dir",)       # where the run lives, not what it is
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class RunConflict(ValueError):
    """A run folder that holds another run than the one asked for."""


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """As JSON records it (tuples become lists), so a configuration compares equal to its config.json."""
    return json.loads(json.dumps(values))


def comparable(config: TrainConfig | dict[str, Any]) -> dict[str, Any]:
    """A configuration's settings as compared and hashed: JSON values, the shard folder spelled out."""
    values = _plain(config.to_dict() if isinstance(config, TrainConfig) else config)
    values["shards"] = str(Path(values.get("shards") or f"shards/{values.get('dataset')}"))
    return {k: v for k, v in values.items() if k not in UNCOMPARED}


def changed_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings of `config` that differ from its model's, dataset's and recipe's presets."""
    base = comparable(resolve(config.model, config.dataset, {"recipe": config.recipe, "fold": config.fold}))
    return {k: v for k, v in comparable(config).items() if base.get(k) != v}


def default_name(config: TrainConfig) -> str:
    """`<dataset>-<model>[-<recipe>]`, then `-<hash of the changed settings>` when there are any."""
    changed = changed_settings(config)
    if not changed:
        return config.run_stem()
    digest = hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:6]
    return f"{config.run_stem()}-{digest}"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"run name {name!r}: use letters, digits, '_', '-' and '.' (one folder name, "
                         "not a path; runs_dir says where runs go)")
    return name


def experiment_name(config: TrainConfig, name: str | None = None) -> str:
    return check_name(name) if name else default_name(config)


def run_folder(config: TrainConfig, name: str | None = None) -> Path:
    """The folder of fold `config.fold` of the experiment `name` (default: `default_name`)."""
    return Path(config.runs_dir) / f"{experiment_name(config, name)}-fold{config.fold}"


def summary_folder(config: TrainConfig, name: str | None = None) -> Path:
    """Where `FOLD=all` writes the mean ± std over the folds."""
    return Path(config.runs_dir) / f"{experiment_name(config, name)}-all"


def shards_fingerprint(shard_dir: Path) -> str:
    """The SHA-256 of every shard's SHA-256 (index.json): changes when any shard is written again."""
    index = json.loads((Path(shard_dir) / "index.json").read_text())
    shards = sorted((s["name"], s["sha256"]) for s in index["shards"])
    return hashlib.sha256(json.dumps(shards).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Plan:
    action: str      # "start" | "resume" | "finished"
    folder: Path
    why: str
    clear: bool = False   # start: empty the folder first (OVERWRITE=1, or a start that never checkpointed)


def _differences(recorded: dict[str, Any], current: dict[str, Any], shown: int = 6) -> str:
    keys = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
    text = ", ".join(f"{k} {json.dumps(recorded.get(k))} -> {json.dumps(current.get(k))}" for k in keys[:shown])
    return text + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def _refuse(folder: Path, what: str) -> RunConflict:
    return RunConflict(f"{folder} holds {what}. OVERWRITE=1 (--overwrite) deletes it and starts this run "
                       "there; NAME=<name> (--name) puts this run in a folder of its own")


def plan(config: TrainConfig, folder: Path, world: int = 1, overwrite: bool = False) -> Plan:
    """What running `config` in `folder` does: start, resume or report it finished; raises RunConflict
    when the folder holds a run of something else (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        return Plan("start", folder, "a new run")
    if overwrite:
        return Plan("start", folder, "OVERWRITE=1: what the folder held is deleted", clear=True)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise _refuse(folder, "files but no config.json (not a run folder of this trainer)")
    recorded = comparable(json.loads(config_file.read_text()))
    current = comparable(config)
    if recorded != current:
        raise _refuse(folder, f"a run of another configuration ({_differences(recorded, current)})")
    record_file = folder / RUN_RECORD
    checkpointed = (folder / "last.pt").is_file() or (folder / "metrics.json").is_file()
    if not record_file.is_file():
        if checkpointed:
            raise _refuse(folder, f"a run with no {RUN_RECORD} (made by an older version: the shards it read "
                                  "are not known)")
        return Plan("start", folder, "it stopped before its first checkpoint: starting again", clear=True)
    record = json.loads(record_file.read_text())
    fingerprint = shards_fingerprint(config.shard_dir)
    if record.get("shards_fingerprint") != fingerprint:
        raise _refuse(folder, f"a run on other shards: {config.shard_dir} was written again since it began "
                              f"(shards {record.get('shards_fingerprint')} then, {fingerprint} now)")
    if (folder / "metrics.json").is_file():
        return Plan("finished", folder, "finished already, with this configuration on these shards")
    if record.get("world_size", 1) != world:
        raise _refuse(folder, f"a run begun with {record.get('world_size', 1)} processes, not {world} (each process "
                              "seeds and reads its own share: resume it with as many, torchrun --nproc-per-node "
                              f"{record.get('world_size', 1)})")
    if (folder / "last.pt").is_file():
        return Plan("resume", folder, "stopped before the end: resuming from its last.pt")
    return Plan("start", folder, "it stopped before its first checkpoint: starting again", clear=True)


def clear(folder: Path) -> None:
    """Empty a run folder (rank 0 only) before a run starts in it again (`Plan.clear`)."""
    if Path(folder).is_dir():
        for item in Path(folder).iterdir():
            shutil.rmtree(item) if item.is_dir() else item.unlink()


def record_start(folder: Path, config: TrainConfig, world: int = 1) -> None:
    """Record in run.json what a starting run reads besides its configuration: the shards (their
    fingerprint) and the world size (rank 0 only)."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"shards": str(config.shard_dir), "shards_fingerprint": shards_fingerprint(config.shard_dir),
              "world_size": world}
    (folder / RUN_RECORD).write_text(json.dumps(record, indent=1) + "\n")


def trim_log(folder: Path, epochs: int) -> None:
    """Keep the first `epochs` epochs of log.jsonl: a run killed after logging an epoch but before
    checkpointing it repeats that epoch on resume, and logs it once."""
    log = Path(folder) / "log.jsonl"
    if not log.is_file():
        return
    kept = [line for line in log.read_text().splitlines() if line.strip() and json.loads(line)["epoch"] <= epochs]
    log.write_text("".join(line + "\n" for line in kept))


# --- finding the runs `make train` wrote, for the commands that read them (eval, predict) ----------------
def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options that name a run as `make train` was given them (MODEL, NAME, TRAIN_ARGS), so the same
    make variables find it; train-only options in TRAIN_ARGS are accepted and ignored."""
    parser.add_argument("--model", help="the run's model (default as make train: tiny, or named for mafw, "
                                        "dfew, ferv39k)")
    parser.add_argument("--name", help="the run's experiment name, as given to make train (NAME=)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="the run's configuration overrides, as given to make train (TRAIN_ARGS)")
    parser.add_argument("--stop-after", help=argparse.SUPPRESS)
    for flag in ("--overwrite", "--reuse"):
        parser.add_argument(flag, action="store_true", help=argparse.SUPPRESS)


def trained_runs(dataset: str, model: str | None, fold: str | int | None, overrides: dict[str, Any],
                 name: str | None = None) -> list[Path]:
    """The run folders `make train` wrote with these options: fold `fold`'s, or every fold's for "all";
    each must hold a best.pt."""
    from trainer.data import dataset_folds, read_index
    from trainer.defaults import choose_model, dataset_name, default_shards

    model, _ = choose_model(model, dataset)
    shards = overrides.get("shards") or default_shards(dataset)
    folds = dataset_folds(read_index(shards)) if str(fold) == "all" else [int(fold or 1)]
    folders = [run_folder(resolve(model, dataset_name(dataset), {**overrides, "fold": k}), name) for k in folds]
    for folder in folders:
        if not (folder / "best.pt").is_file():
            raise FileNotFoundError(f"{folder / 'best.pt'} not found: no run was trained with these options. Give "
                                    "make train's DATASET, MODEL, FOLD, NAME and TRAIN_ARGS, or CHECKPOINT=")
    return folders
