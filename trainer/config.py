"""The training configuration: one frozen dataclass, presets per model and dataset, command-line overrides.

Resolution order (later wins): the dataclass defaults, `presets.yaml` → `models.<MODEL>`, then
`datasets.<DATASET>`, then `--set key=value` overrides. The resolved configuration is written
into the run folder and into every checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESETS = Path(__file__).resolve().parent / "presets.yaml"


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "sample"
    shards: str = ""              # the dataset folder of shards; default shards/<dataset>
    fold: int = 1
    model: str = "tiny"
    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-3              # base learning rate (models may scale it per parameter group)
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    num_frames: int = 16          # frames per clip, for the loader and the model's temporal embedding alike
    workers: int = 2
    val_fraction: float = 0.1
    crop_scale: tuple[float, float] = (0.8, 1.0)   # training: random resized crop, fraction of the area
    flip: bool = True             # training: random horizontal flip
    shuffle_buffer: int = 64      # training clips mixed across shards; 0: shard order
    seed: int = 0
    runs_dir: str = "runs"
    clip_path: str = ""           # a CLIP checkpoint file, when not in the cache
    log_every: int = 10
    model_options: dict[str, Any] = field(default_factory=dict)   # ModelConfig overrides (ablations)

    @property
    def shard_dir(self) -> Path:
        return Path(self.shards or f"shards/{self.dataset}")

    def run_name(self) -> str:
        return f"{self.dataset}-{self.model}-fold{self.fold}"

    def data_config(self, model):
        """The loader settings of this run, for `model`: the inputs it reads, at its CLIP's input size."""
        from trainer.data import DataConfig

        inputs = getattr(model, "inputs", {"frames", "masks", "landmarks", "descriptions"})
        return DataConfig(shards=str(self.shard_dir), fold=self.fold, num_frames=self.num_frames,
                          image_size=int(model.input_resolution), batch_size=self.batch_size, workers=self.workers,
                          val_fraction=self.val_fraction, seed=self.seed, use_masks="masks" in inputs,
                          use_landmarks="landmarks" in inputs, crop_scale=tuple(self.crop_scale), flip=self.flip,
                          shuffle_buffer=self.shuffle_buffer)

    def build_model(self, classes, **kwargs):
        """This run's model for `classes`: its preset, `model_options`, and a temporal model that
        covers exactly `num_frames` frames. `kwargs` go to `trainer.models.build_model`."""
        from trainer.models import build_model

        return build_model(self.model, classes, clip_path=self.clip_path or None,
                           **{"num_frames": self.num_frames, **self.model_options}, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_value(text: str) -> Any:
    """A command-line value: a number (1e-3 included, which YAML 1.1 reads as a string), else YAML:
    true, [1, 2], {use_parsing: false}, or a string."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def _checked(name: str, kind: str, value: Any) -> Any:
    """`value` for a field annotated `kind`; ints are accepted for floats, anything else must match."""
    expected = {"int": int, "float": (int, float), "str": str, "bool": bool}.get(kind)
    if kind.startswith("dict"):
        expected = dict
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


def resolve(model: str, dataset: str, overrides: dict[str, Any] | None = None,
            presets: Path = PRESETS) -> TrainConfig:
    table = yaml.safe_load(presets.read_text()) if presets.is_file() else {}
    values: dict[str, Any] = {"model": model, "dataset": dataset}
    values.update((table.get("models") or {}).get(model, {}))
    values.update((table.get("datasets") or {}).get(dataset, {}))
    values.update(overrides or {})
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
    if "crop_scale" in kept:
        kept["crop_scale"] = tuple(kept["crop_scale"])
    return TrainConfig(**kept)
