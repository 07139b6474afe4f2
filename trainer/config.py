"""The training configuration: one frozen dataclass, recipes of presets per model and dataset, overrides.

A recipe is a named set of presets (`trainer/presets.yaml`): `ours` (the default, our tuned
settings), `reference` (DFER-CLIP as its reference code trains it) or `paper` (FineCLIPER as its
paper describes it, with our guesses where it is silent); each value's source is in
docs/training.md. Resolution order (later wins): the dataclass defaults, then
`datasets.<DATASET>` (what every recipe shares, e.g. loader workers), then the recipe's
`models.<MODEL>`, then its `datasets.<DATASET>`, then `--set key=value` overrides
(`--set recipe=reference` picks the recipe). `model_options` dictionaries are merged key by key
rather than replaced. The resolved configuration is written into the run folder and into every
checkpoint.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

PRESETS = Path(__file__).resolve().parent / "presets.yaml"


RECIPES = ("ours", "reference", "paper")   # reference: DFER-CLIP's models; paper: FineCLIPER's
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "multistep")
PRECISIONS = ("bf16", "fp32")
NORMALISATIONS = ("clip", "unit")


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "sample"
    shards: str = ""              # the dataset folder of shards; default shards/<dataset>
    fold: int = 1
    model: str = "tiny"
    recipe: str = "ours"          # "ours" | "reference": which presets of presets.yaml (see the module docstring)
    epochs: int = 10
    batch_size: int = 8
    optimizer: str = "adamw"      # "adamw" | "sgd" (with `momentum`)
    lr: float = 1e-3              # base learning rate (models may scale it per parameter group)
    weight_decay: float = 0.01
    momentum: float = 0.9         # SGD only
    schedule: str = "cosine"      # "cosine": linear warm-up then cosine decay, per step;
    #                               "multistep": lr × lr_gamma at each epoch of lr_milestones (MultiStepLR)
    warmup_epochs: float = 1.0    # cosine only
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    grad_clip: float = 1.0        # max gradient norm; 0: no clipping
    precision: str = "bf16"       # on a GPU: "bf16" autocast or "fp32"; a CPU always computes in fp32
    num_frames: int = 16          # frames per clip, for the loader and the model's temporal embedding alike
    workers: int = 2
    val_fraction: float = 0.1     # 0: train on every training clip; the `val` protocol then keeps the last epoch
    paper_protocol: bool = True   # also test every epoch and report the best test epoch (the papers' protocol)
    crop_scale: tuple[float, float] = (0.8, 1.0)   # training: random resized crop, fraction of the area
    flip: bool = True             # training: random horizontal flip
    brightness: float = 0.0       # training: brightness factor uniform in [1 - b, 1 + b] per clip; 0: off
    rotation: float = 0.0         # training: rotation uniform in ±degrees per clip; 0: off
    normalise: str = "clip"       # model inputs: "clip" (CLIP's mean/std) or "unit" (x / 255, DFER-CLIP's code)
    shuffle_buffer: int = 64      # training clips mixed across shards; 0: shard order
    open_shards: int = 64         # training: shards each loader worker reads at once, interleaved
    drop_last: bool = False       # training: only full batches (the workers' short last batches pooled first)
    landmark_style: str = "lines"  # landmark images: "lines" on black (ours) or "points_on_face" (FineCLIPER's figure)
    train_sampling: str = "segments"  # training frames: "segments" (ours) or "dferclip" (trainer/sampling.py)
    global_batch: bool = False    # under torchrun: False, batch_size per process; True, batch_size is the global
    #                               batch, each of the N processes taking batch_size / N (N must divide it)
    # DFER-CLIP's class descriptions: "ours" (model_options.class_descriptions, by default our file),
    # "reference" (DFER-CLIP's models/Text.py from the cache, `make fetch-reference`), or a path to a
    # file; the last two replace model_options.class_descriptions
    class_descriptions: str = "ours"
    seed: int = 0
    runs_dir: str = "runs"
    clip_path: str = ""           # a CLIP checkpoint file, when not in the cache
    log_every: int = 10
    model_options: dict[str, Any] = field(default_factory=dict)   # ModelConfig overrides (ablations)

    @property
    def shard_dir(self) -> Path:
        return Path(self.shards or f"shards/{self.dataset}")

    def run_stem(self) -> str:
        """`<dataset>-<model>`, with `-reference` or `-paper` for those recipes."""
        return f"{self.dataset}-{self.model}" + (f"-{self.recipe}" if self.recipe != "ours" else "")

    def run_name(self) -> str:
        return f"{self.run_stem()}-fold{self.fold}"

    def rank_batch(self, world: int = 1) -> int:
        """The batch each of `world` processes takes: `batch_size`, or with `global_batch` its share of it
        (a world size that does not divide it is refused: the recipe's batch would change)."""
        if not self.global_batch:
            return self.batch_size
        if world < 1 or self.batch_size % world:
            raise ValueError(f"recipe {self.recipe!r} trains with a global batch of {self.batch_size} "
                             f"(global_batch: true), which {world} processes cannot share evenly; run on a "
                             f"number of GPUs that divides {self.batch_size}, or --set global_batch=false to "
                             f"take {self.batch_size} per process")
        return self.batch_size // world

    def batch_record(self, world: int = 1) -> dict[str, Any]:
        """How the batch is shared under `world` processes, and the learning-rate rule (none: the
        configured rates are used as they are, whatever the batch), for metrics.json and the log."""
        per_rank = self.rank_batch(world)
        return {"per_rank": per_rank, "world_size": world, "global": per_rank * world,
                "global_batch_setting": self.global_batch,
                "learning_rate_rule": "as configured, not scaled with the batch or the world size"}

    def data_config(self, model, world: int = 1):
        """The loader settings of this run, for `model`: the inputs it reads, at its CLIP's input size, the
        batch each of `world` processes takes (`rank_batch`)."""
        from trainer.data import DataConfig

        inputs = getattr(model, "inputs", {"frames", "masks", "landmarks", "descriptions"})
        return DataConfig(shards=str(self.shard_dir), fold=self.fold, num_frames=self.num_frames,
                          image_size=int(model.input_resolution), batch_size=self.rank_batch(world),
                          workers=self.workers,
                          val_fraction=self.val_fraction, seed=self.seed, use_masks="masks" in inputs,
                          use_landmarks="landmarks" in inputs, crop_scale=tuple(self.crop_scale), flip=self.flip,
                          brightness=self.brightness, rotation=self.rotation, shuffle_buffer=self.shuffle_buffer,
                          open_shards=self.open_shards, drop_last=self.drop_last, landmark_style=self.landmark_style,
                          train_sampling=self.train_sampling)

    def build_model(self, classes, **kwargs):
        """This run's model for `classes`: its preset, `model_options`, a temporal model that covers
        exactly `num_frames` frames, and (DFER-CLIP) the class descriptions `class_descriptions` names.
        `kwargs` go to `trainer.models.build_model`."""
        from trainer.models import build_model

        options = {"num_frames": self.num_frames, **self.model_options}
        source = self.descriptions_source()
        if source is not None and source["file"]:
            options["class_descriptions"] = source["file"]
        return build_model(self.model, classes, clip_path=self.clip_path or None, **options, **kwargs)

    def descriptions_source(self) -> dict[str, Any] | None:
        """Where a DFER-CLIP run's class descriptions come from: {"source": "ours" | "reference" | "file",
        "file": the path read ("" for ours: model_options decide), "sha256"}; None for FineCLIPER.
        "reference" without the fetched file stops here, with the command that fetches it."""
        from trainer.models import model_preset
        from trainer.reference_descriptions import describe_source

        if model_preset(self.model).family.__name__ != "DFERCLIP":
            return None
        return describe_source(self.class_descriptions)

    def autocast(self, device) -> Callable:
        """A context factory: bf16 autocast on a GPU when `precision` is bf16, else fp32 (a CPU always
        computes in fp32)."""
        if getattr(device, "type", str(device)) == "cuda" and self.precision == "bf16":
            import torch

            return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __post_init__(self) -> None:
        from trainer.sampling import TRAIN_SAMPLINGS

        for name, allowed in (("recipe", RECIPES), ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                              ("precision", PRECISIONS), ("normalise", NORMALISATIONS),
                              ("train_sampling", TRAIN_SAMPLINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.brightness < 0 or self.rotation < 0 or self.open_shards < 1 or self.batch_size < 1:
            raise ValueError("brightness and rotation must be >= 0, open_shards and batch_size >= 1")


def parse_value(text: str) -> Any:
    """A command-line value: a number (1e-3 included, which YAML 1.1 reads as a string), else YAML:
    true, [1, 2], {use_parsing: false}, or a string."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def parse_overrides(items: list[str], shards: str = "") -> dict[str, Any]:
    """`--set KEY=VALUE` items (and `--shards`, when given) as configuration overrides."""
    overrides = {key.strip(): parse_value(value) for key, _, value in (item.partition("=") for item in items)}
    if shards:
        overrides["shards"] = shards
    return overrides


def _checked(name: str, kind: str, value: Any) -> Any:
    """`value` for a field annotated `kind`; ints are accepted for floats, anything else must match."""
    expected = {"int": int, "float": (int, float), "str": str, "bool": bool}.get(kind)
    if kind.startswith("dict"):
        expected = dict
    if kind == "tuple[int, ...]":
        values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(values, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                             for v in values):
            raise ValueError(f"configuration key {name} must be a list of integers, e.g. [30, 40], got {value!r}")
        return tuple(values)
    if kind == "tuple[float, float]":
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise ValueError(f"configuration key {name} must be two numbers, e.g. [0.8, 1.0], got {value!r}")
        return tuple(float(v) for v in value)
    if expected is None:
        return value
    if not isinstance(value, expected) or (kind in ("int", "float") and isinstance(value, bool)):
        raise ValueError(f"configuration key {name} must be {kind}, got {value!r}")
    return float(value) if kind == "float" else value


def recipe_settings(config: TrainConfig, presets: Path = PRESETS) -> dict[str, Any]:
    """Every value the recipe of `config` sets for its model and dataset (presets.yaml), as this run
    resolved it (an override on the command line shows here too): the recipe's switches, for metrics.json."""
    table = yaml.safe_load(presets.read_text()) if presets.is_file() else {}
    recipe = (table.get("recipes") or {}).get(config.recipe) or {}
    layers = [((recipe.get("models") or {}).get(config.model)) or {},
              ((recipe.get("datasets") or {}).get(config.dataset)) or {}]
    values = config.to_dict()
    settings = {key: values[key] for layer in layers for key in layer if key != "model_options"}
    options = sorted({key for layer in layers for key in (layer.get("model_options") or {})})
    if options:
        settings["model_options"] = {key: values["model_options"].get(key) for key in options}
    return settings


def resolve(model: str, dataset: str, overrides: dict[str, Any] | None = None,
            presets: Path = PRESETS) -> TrainConfig:
    """The configuration of `model` on `dataset` (see the module docstring for the order)."""
    table = yaml.safe_load(presets.read_text()) if presets.is_file() else {}
    overrides = dict(overrides or {})
    recipe = overrides.get("recipe", "ours")
    recipes = table.get("recipes") or {}
    if recipe not in recipes:
        raise ValueError(f"unknown recipe {recipe!r}; recipes: {', '.join(recipes) or 'none'}")
    models = recipes[recipe].get("models") or {}
    if model not in models:
        hint = {"reference": " (FineCLIPER's code is not public: RECIPE=paper is its paper's configuration, "
                             "docs/training.md)",
                "paper": " (DFER-CLIP's recipe is its reference code's: RECIPE=reference)"}
        raise ValueError(f"model {model} has no {recipe!r} recipe; models with one: {', '.join(models)}"
                         + hint.get(recipe, ""))
    values: dict[str, Any] = {"model": model, "dataset": dataset, "recipe": recipe}
    layers = [(table.get("datasets") or {}).get(dataset, {}), models[model] or {},
              (recipes[recipe].get("datasets") or {}).get(dataset, {}), overrides]
    for layer in layers:
        for key, value in (layer or {}).items():
            if key == "model_options" and isinstance(value, dict):
                value = {**values.get("model_options", {}), **value}
            values[key] = value
    kinds = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(kinds))
    if unknown:
        raise ValueError(f"unknown configuration key(s) {', '.join(unknown)}; known: {', '.join(sorted(kinds))}")
    return TrainConfig(**{name: _checked(name, kinds[name], value) for name, value in values.items()})


# Keys that runs made by earlier versions recorded and this one derives instead.
RETIRED_KEYS = ("image_size",)   # now the CLIP's own input resolution


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """A run's recorded configuration (config.json, a checkpoint's "config") back as a TrainConfig."""
    kept = {k: v for k, v in values.items() if k not in RETIRED_KEYS}
    if "landmark_style" not in values:
        # recorded before FineCLIPER's description branch and softmax negative loss (and this key)
        # existed: rebuild the model it trained (its checkpoint has no weights for the branch)
        kept["model_options"] = {"use_description_branch": False, "negative_loss": "pairwise",
                                 **(kept.get("model_options") or {})}
    for key in ("crop_scale", "lr_milestones"):
        if key in kept:
            kept[key] = tuple(kept[key])
    return TrainConfig(**kept)
