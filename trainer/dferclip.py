"""DFER-CLIP (BMVC 2023): a fine-tuned CLIP image encoder against learned class prompts.

Per clip: every frame through CLIP's image encoder (trainable, at a small learning rate),
then a temporal transformer whose learnable class token gives the clip embedding. Per class:
M learnable context vectors (class-specific) in front of the tokenised class description
(prompts/dferclip_class_descriptions.yaml: visible facial cues, never the emotion's name,
or another file: see `read_class_descriptions`),
through the frozen text tower, as CoOp does: the prompt is tokenised with M placeholder
words after the start token, and their embeddings are replaced by the context vectors.
Logits are cosines over a fixed temperature (0.01); the loss is cross-entropy.
Masks, landmarks and descriptions in the batch are ignored.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from trainer.adapters import AdaptedCLIP
from trainer.clip_loader import tokenize
from trainer.model_config import ModelConfig
from trainer.temporal import TemporalTransformer

PLACEHOLDER = "X"  # one BPE token ("x</w>"); only its position matters, its embedding is replaced


def read_class_descriptions(path: Path, classes: Sequence[str]) -> list[str]:
    """One description per class, in the order of `classes`, from one of three forms of file:

    - YAML (`.yaml`, `.yml`): a mapping class name -> description (ours, in prompts/);
    - DFER-CLIP's `models/Text.py` (`.py`): parsed, never executed; the list assigned to
      `class_descriptor_<number of classes>` (7 for DFEW and FERV39k, 11 for MAFW), whose order is
      the DFER-CLIP annotation order our class lists follow;
    - any other text file: one description per non-empty line, in class order.
    """
    if not path.is_file():
        raise FileNotFoundError(f"class descriptions file {path} not found")
    if path.suffix in (".yaml", ".yml"):
        descriptions = yaml.safe_load(path.read_text()) or {}
        if not isinstance(descriptions, dict):
            raise ValueError(f"{path}: expected a mapping of class name to description")
        missing = [c for c in classes if not str(descriptions.get(c, "")).strip()]
        if missing:
            raise KeyError(f"{path} has no description for class(es) {', '.join(missing)}")
        return [str(descriptions[c]).strip() for c in classes]
    if path.suffix == ".py":
        name = f"class_descriptor_{len(classes)}"
        lines = python_string_list(path, name)
    else:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(lines) != len(classes):
        raise ValueError(f"{path}: {len(lines)} descriptions for {len(classes)} classes ({', '.join(classes)}); "
                         "give one per class, in this order")
    return lines


def python_string_list(path: Path, name: str) -> list[str]:
    """The list of string literals assigned to `name` at the top level of a Python file (read with
    `ast`, not run)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
                and isinstance(node.value, (ast.List, ast.Tuple))):
            values = [ast.literal_eval(item) for item in node.value.elts]
            if all(isinstance(v, str) for v in values):
                return [v.strip() for v in values]
    raise ValueError(f"{path} assigns no list of strings to {name}")


class DFERCLIP(nn.Module):
    def __init__(self, clip: nn.Module, classes: Sequence[str], config: ModelConfig):
        super().__init__()
        self.config, self.classes = config, tuple(classes)
        clip.requires_grad_(False)
        clip.visual.requires_grad_(True)
        self.towers = AdaptedCLIP(clip)
        dim, text_width = self.towers.embed_dim, clip.transformer.width
        self.temporal = (TemporalTransformer(dim, config.temporal_layers, config.num_frames, class_token=True,
                                             block=config.temporal_block)
                         if config.temporal_layers > 0 else None)

        m = config.context_tokens
        descriptions = read_class_descriptions(config.prompt_file(config.class_descriptions), self.classes)
        self.register_buffer("prompt_tokens", tokenize([f"{' '.join([PLACEHOLDER] * m)} {d}" for d in descriptions]),
                             persistent=False)
        self.context = nn.Parameter(0.02 * torch.randn(len(self.classes), m, text_width))

    @property
    def input_resolution(self) -> int:
        return self.towers.input_resolution

    @property
    def inputs(self) -> set[str]:
        """The batch keys this model reads, so the data loader decodes nothing more."""
        return {"frames", "labels"}

    def encode_classes(self) -> torch.Tensor:
        """(C, D) unit-norm class embeddings: [start] context[c] description[c] [end]."""
        m = self.config.context_tokens
        fixed = self.towers.token_embeddings(self.prompt_tokens)
        embeddings = torch.cat([fixed[:, :1], self.context.to(fixed.dtype), fixed[:, 1 + m:]], dim=1)
        return F.normalize(self.towers.encode_text(self.prompt_tokens, embeddings=embeddings), dim=-1)

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) → (B, D) unit-norm."""
        b, t = frames.shape[:2]
        per_frame = self.towers.encode_image(frames.flatten(0, 1)).view(b, t, -1)
        video = self.temporal(per_frame) if self.temporal is not None else per_frame.mean(dim=1)
        return F.normalize(video, dim=-1)

    def forward(self, batch: dict) -> dict:
        logits = self.encode_video(batch["frames"]) @ self.encode_classes().T / self.config.temperature
        out: dict = {"logits": logits, "parts": {}}
        if batch.get("labels") is not None:
            out["loss"] = F.cross_entropy(logits, batch["labels"])
            out["parts"] = {"classification": out["loss"].detach()}
        return out

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def count_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def param_groups(self, base_lr: float) -> list[dict]:
        """Three groups as in DFER-CLIP's main.py: the temporal model at base_lr, the image encoder at
        base_lr × image_encoder_lr_scale, the context vectors at base_lr × context_lr_scale."""
        encoder = [p for p in self.towers.clip.visual.parameters() if p.requires_grad]
        groups = [
            {"name": "temporal", "params": [p for p in (self.temporal.parameters() if self.temporal else [])
                                            if p.requires_grad], "lr": base_lr},
            {"name": "image_encoder", "params": encoder, "lr": base_lr * self.config.image_encoder_lr_scale},
            {"name": "context", "params": [self.context], "lr": base_lr * self.config.context_lr_scale},
        ]
        grouped = {id(p) for g in groups for p in g["params"]}
        stray = [p for p in self.trainable_parameters() if id(p) not in grouped]
        assert not stray, f"{len(stray)} trainable parameters in no optimiser group"
        return [g for g in groups if g["params"]]
