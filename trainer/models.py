"""Models by name (`MODEL=`): the presets, `build_model`, and the trainable-parameter report.

| name | family | CLIP |
| --- | --- | --- |
| fineclip-b16 / -b32 / -l14 | FineCLIPER (trainer/fineclip.py) | OpenAI ViT-B/16, ViT-B/32, ViT-L/14 |
| dferclip-b16 / -b32 | DFER-CLIP (trainer/dferclip.py) | OpenAI ViT-B/16, ViT-B/32 |
| tiny / tiny-dferclip | FineCLIPER / DFER-CLIP | "tiny-synthetic": a small CLIP pretrained on synthetic faces, shipped (demo, learning test; docs/tiny-clip.md) |
| tiny-random / tiny-random-dferclip | FineCLIPER / DFER-CLIP | "tiny": a smaller random CLIP (shape and loop tests) |

Batch contract. The data loader (trainer/data.py) yields images as uint8, on the CPU (pinned when
a GPU is present); `trainer.data.to_model_inputs(batch, device)` moves the batch to the model's
device and converts the images there, and is how every batch reaches a model (training,
validation, evaluation, prediction, benchmarks). What the model receives (tensors on its device):
    frames       float32 (B, T, 3, H, W), CLIP-normalised, H = W = model.input_resolution
                 (from the loader: uint8 (B, T, 3, H, W) RGB, channels first)
    masks        float32 (B, T, 3, H, W), colour-coded parsing masks, CLIP-normalised (FineCLIPER, use_parsing)
                 (from the loader: uint8 (B, T, 3, H, W) colour images)
    landmarks    float32 (B, T, 3, H, W), landmarks drawn as images, CLIP-normalised (FineCLIPER, use_landmarks)
                 (from the loader: uint8 (B, T, 3, H, W) drawings)
    descriptions list[str] of length B, possibly empty strings (FineCLIPER, use_description)
    labels       long (B,), indices into `classes`; optional (no loss without it)
CLIP-normalised: (x / 255 - mean) / std per channel with CLIP's mean and std (trainer.data.clip_normalise).
Models never see uint8; a batch built by hand must hold normalised float images (or go through
to_model_inputs, which leaves floating-point images as they are).
`model.inputs` is the set of keys a model reads. `model(batch)` → {"logits": (B, C), "loss": scalar (only with labels), "parts": {name: detached scalar}}.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Sequence

from torch import nn

from trainer.clip_loader import load_clip, pretrained_names, random_clip
from trainer.dferclip import DFERCLIP
from trainer.fineclip import FineCLIPER
from trainer.model_config import ModelConfig


@dataclass(frozen=True)
class ModelPreset:
    family: type[nn.Module]
    clip: str


MODELS: dict[str, ModelPreset] = {
    "fineclip-b16": ModelPreset(FineCLIPER, "ViT-B/16"),
    "fineclip-b32": ModelPreset(FineCLIPER, "ViT-B/32"),
    "fineclip-l14": ModelPreset(FineCLIPER, "ViT-L/14"),
    "dferclip-b16": ModelPreset(DFERCLIP, "ViT-B/16"),
    "dferclip-b32": ModelPreset(DFERCLIP, "ViT-B/32"),
    "tiny": ModelPreset(FineCLIPER, "tiny-synthetic"),
    "tiny-dferclip": ModelPreset(DFERCLIP, "tiny-synthetic"),
    "tiny-random": ModelPreset(FineCLIPER, "tiny"),
    "tiny-random-dferclip": ModelPreset(DFERCLIP, "tiny"),
}


def model_preset(name: str) -> ModelPreset:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; models: {', '.join(MODELS)}") from None


def model_config(name: str, **overrides) -> ModelConfig:
    """The preset config of a model name with fields replaced by `overrides`."""
    if "freeze_clip" in overrides:  # the switch's name in runs made before train_clip existed
        overrides["train_clip"] = "none" if overrides.pop("freeze_clip") else "all"
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"unknown model setting(s) {', '.join(unknown)}; settings: {', '.join(sorted(fields))}")
    return dataclasses.replace(ModelConfig(clip=model_preset(name).clip), **overrides)


def build_model(name: str, classes: Sequence[str], *, config: ModelConfig | None = None,
                clip_path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                pretrained: bool = True, seed: int = 0, **overrides) -> nn.Module:
    """A model by name, for `classes` (their order is the label order).

    `config` replaces the preset (then `overrides` apply to it). CLIP weights come from
    `clip_path` if given, else OpenAI's checkpoint for `config.clip`, or a checkpoint shipped in
    the package under that name (see trainer/clip_loader.py);
    `pretrained=False`, and the "tiny" CLIP (no weights exist for it) always, use random weights
    (seeded by `seed`).
    """
    family = model_preset(name).family
    config = dataclasses.replace(config, **overrides) if config is not None else model_config(name, **overrides)
    if clip_path is not None:
        clip, _ = load_clip(clip_path)
    elif pretrained and config.clip in pretrained_names():
        clip, _ = load_clip(config.clip, cache_dir=cache_dir)
    else:
        clip = random_clip(config.clip, seed=seed)
    return family(clip, classes, config)


def trainable_parts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per part: each adapter set ("towers.visual_adapters.video", ...), the
    temporal model, the gate, ..."""
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            parts = name.split(".")
            key = ".".join(parts[:3] if parts[0] == "towers" else parts[:1])
            counts[key] = counts.get(key, 0) + param.numel()
    return counts


def trainable_summary(model: nn.Module) -> str:
    """Trainable parameters, in total and per part (adapter set, temporal model, ...), for the run log."""
    counts = trainable_parts(model)
    total = sum(counts.values())
    lines = [f"trainable parameters: {total:,} ({total / 1e6:.2f}M)"]
    lines += [f"  {key}: {count:,}" for key, count in counts.items()]
    return "\n".join(lines)
