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
    num_frames: int = 16
    image_size: int = 224
    workers: int = 2
    val_fraction: float = 0.1
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

    def data_config(self, model_inputs: set[str]):
        """The loader settings of this run, for a model that reads `model_inputs`."""
        from trainer.data import DataConfig

        return DataConfig(shards=str(self.shard_dir), fold=self.fold, num_frames=self.num_frames,
                          image_size=self.image_size, batch_size=self.batch_size, workers=self.workers,
                          val_fraction=self.val_fraction, seed=self.seed, use_masks="masks" in model_inputs,
                          use_landmarks="landmarks" in model_inputs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_value(text: str) -> Any:
    """A command-line value as YAML: 3, 0.1, true, [1, 2], {use_parsing: false}, or a string."""
    return yaml.safe_load(text)


def resolve(model: str, dataset: str, overrides: dict[str, Any] | None = None,
            presets: Path = PRESETS) -> TrainConfig:
    table = yaml.safe_load(presets.read_text()) if presets.is_file() else {}
    values: dict[str, Any] = {"model": model, "dataset": dataset}
    values.update((table.get("models") or {}).get(model, {}))
    values.update((table.get("datasets") or {}).get(dataset, {}))
    values.update(overrides or {})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown configuration key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return TrainConfig(**values)


def from_dict(values: dict[str, Any]) -> TrainConfig:
    return TrainConfig(**values)
