"""FineCLIPER (ACM MM 2024, arXiv 2407.02157): a frozen CLIP tuned with adapters and fine-grained cues.

Per clip: the frames go through the frozen vision tower with the "video" adapters, then a
temporal transformer; the parsing masks and landmark images go through the same tower with
their own adapters and are averaged over time. The three embeddings are fused with weights
a small gate computes from them. Each class has a positive prompt ("A person with an
expression of {label}.") and a negative one ("... of no {label}."), encoded by the frozen
text tower with separate adapters; logits are scaled cosines between the fused embedding and
the positive prompts.

Losses (`parts`, unweighted; `loss` = classification + weights × the others):
- classification: cross-entropy over the positive-prompt logits.
- negative: for every class c, a two-way choice between "c" (positive prompt) and "not c"
  (negative prompt): the clip should be nearer "c" than "not c" for its own class and nearer
  "not c" than "c" for every other class. Training each negative prompt against its own
  positive gives "no {label}" a meaning the text adapters cannot dodge (a loss that only
  pushed clips away from their class's negative prompt is met by moving that prompt
  anywhere far off), and it supervises the other classes' prompts too. The own class and the
  mean over the others count half each, so the C-1 "not" decisions do not drown the one
  "is" decision. Logits stay on the positive prompts, as in the paper.
- description: the clip's motion description through the text tower ("description"
  adapters), aligned with the video-branch embedding by a symmetric contrastive loss over
  the batch; empty descriptions are left out, identical texts count as matches of each other.
"""

from __future__ import annotations

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

BRANCH_INPUTS = {"video": "frames", "parsing": "masks", "landmarks": "landmarks"}  # branch → batch key


def read_label_templates(path: Path) -> dict[str, str]:
    templates = yaml.safe_load(path.read_text())
    for kind in ("positive", "negative"):
        if "{label}" not in str((templates or {}).get(kind, "")):
            raise ValueError(f"{path}: needs a {kind!r} template containing {{label}}")
    return templates


class FineCLIPER(nn.Module):
    def __init__(self, clip: nn.Module, classes: Sequence[str], config: ModelConfig):
        super().__init__()
        self.config, self.classes = config, tuple(classes)
        clip.requires_grad_(config.train_clip == "all")
        clip.visual.requires_grad_(config.train_clip in ("vision", "all"))
        self.branches = ["video"] + ["parsing"] * config.use_parsing + ["landmarks"] * config.use_landmarks
        text_sets = ["positive"] + ["negative"] * config.use_negative_prompts + ["description"] * config.use_description
        self.towers = AdaptedCLIP(clip,
                                  visual_sets=self.branches if config.use_visual_adapters else (),
                                  text_sets=text_sets if config.use_text_adapters else (),
                                  ratio=config.adapter_ratio, mlp_scale=config.adapter_scale)
        dim = self.towers.embed_dim
        self.temporal = (TemporalTransformer(dim, config.temporal_layers, config.num_frames,
                                             block=config.temporal_block)
                         if config.temporal_layers > 0 else None)
        self.gate = None
        if config.fusion == "learned" and len(self.branches) > 1:
            self.gate = nn.Sequential(nn.Linear(len(self.branches) * dim, dim // 4), nn.GELU(),
                                      nn.Linear(dim // 4, len(self.branches)))
            # Zero logits: training starts from equal weights, like fusion="mean".
            nn.init.zeros_(self.gate[-1].weight)
            nn.init.zeros_(self.gate[-1].bias)

        templates = read_label_templates(config.prompt_file(config.label_templates))
        labels = [c.replace("_", " ") for c in self.classes]
        self.register_buffer("positive_tokens", tokenize([templates["positive"].format(label=c) for c in labels]),
                             persistent=False)
        if config.use_negative_prompts:
            self.register_buffer("negative_tokens",
                                 tokenize([templates["negative"].format(label=c) for c in labels]), persistent=False)

    @property
    def input_resolution(self) -> int:
        return self.towers.input_resolution

    @property
    def inputs(self) -> set[str]:
        """The batch keys this model reads, so the data loader decodes nothing more."""
        keys = {BRANCH_INPUTS[b] for b in self.branches} | {"labels"}
        return (keys | {"descriptions"}) if self.config.use_description else keys

    def _visual_set(self, branch: str) -> str | None:
        return branch if self.config.use_visual_adapters else None

    def _text_set(self, name: str) -> str | None:
        return name if self.config.use_text_adapters else None

    def encode_branch(self, branch: str, clips: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) → (B, D): per-frame embeddings, pooled over time."""
        b, t = clips.shape[:2]
        frames = self.towers.encode_image(clips.flatten(0, 1), self._visual_set(branch)).view(b, t, -1)
        if branch == "video" and self.temporal is not None:
            return self.temporal(frames)
        return frames.mean(dim=1)

    def fuse(self, embeddings: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unit-norm weighted sum of the unit-norm branch embeddings."""
        stacked = torch.stack([F.normalize(embeddings[b], dim=-1) for b in self.branches], dim=1)  # (B, n, D)
        if self.gate is not None:
            weights = self.gate(stacked.flatten(1)).softmax(dim=-1)
        else:
            weights = stacked.new_full(stacked.shape[:2], 1 / len(self.branches))
        return F.normalize((weights.unsqueeze(-1) * stacked).sum(dim=1), dim=-1)

    def encode_prompts(self, tokens: torch.Tensor, text_set: str) -> torch.Tensor:
        return F.normalize(self.towers.encode_text(tokens, self._text_set(text_set)), dim=-1)

    def forward(self, batch: dict) -> dict:
        embeddings = {}
        for branch in self.branches:
            key = BRANCH_INPUTS[branch]
            if key not in batch:
                raise KeyError(f"FineCLIPER with the {branch} branch on needs batch[{key!r}] "
                               f"(or turn the branch off in ModelConfig)")
            embeddings[branch] = self.encode_branch(branch, batch[key])
        clip_embedding = self.fuse(embeddings)
        zero_shot = self.config.supervision == "descriptions"
        # Zero-shot: class prompts go through the text adapters the descriptions trained.
        positive = self.encode_prompts(self.positive_tokens, "description" if zero_shot else "positive")
        logits = clip_embedding @ positive.T / self.config.temperature
        out: dict = {"logits": logits, "parts": {}}
        labels = batch.get("labels")
        if zero_shot and batch.get("descriptions") is not None:
            # trained on sample-level text only: the labels are never seen (in evaluation the same
            # loss is reported, so that a zero-shot run can select its epoch without labels)
            description = self.description_loss(clip_embedding, batch["descriptions"])
            out["loss"] = description if description is not None else 0.0 * clip_embedding.sum()
            out["parts"] = {"description": out["loss"].detach()}
            return out
        if labels is None:
            return out

        parts = {"classification": F.cross_entropy(logits, labels)}
        weighted = parts["classification"]
        if self.config.use_negative_prompts:
            negative = self.encode_prompts(self.negative_tokens, "negative")
            parts["negative"] = self.negative_prompt_loss(clip_embedding, positive, negative, labels)
            weighted = weighted + self.config.negative_loss_weight * parts["negative"]
        if self.config.use_description and batch.get("descriptions") is not None:
            description = self.description_loss(embeddings["video"], batch["descriptions"])
            if description is not None:
                parts["description"] = description
                weighted = weighted + self.config.description_loss_weight * description
        out["loss"] = weighted
        out["parts"] = {name: value.detach() for name, value in parts.items()}
        return out

    def negative_prompt_loss(self, clip_embedding: torch.Tensor, positive: torch.Tensor,
                             negative: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per class, "c" vs "not c" (see the module docstring); inputs unit-norm, (B, D) and (C, D)."""
        pair = torch.stack([clip_embedding @ positive.T, clip_embedding @ negative.T], dim=-1)
        pair = pair / self.config.temperature  # (B, C, 2): index 0 "is c", 1 "is not c"
        is_class = F.one_hot(labels, len(self.classes)).bool()
        nll = F.cross_entropy(pair.flatten(0, 1), (~is_class).long().flatten(), reduction="none").view(is_class.shape)
        own = (nll * is_class).sum(dim=1)
        others = (nll * ~is_class).sum(dim=1) / max(len(self.classes) - 1, 1)
        return 0.5 * (own + others).mean()

    def description_loss(self, video: torch.Tensor, descriptions: Sequence[str]) -> torch.Tensor | None:
        """Symmetric InfoNCE between video embeddings and their descriptions; None below two texts."""
        if len(descriptions) != len(video):
            raise ValueError(f"{len(descriptions)} descriptions for a batch of {len(video)} clips")
        keep = [i for i, text in enumerate(descriptions) if text and text.strip()]
        if len(keep) < 2:
            return None
        texts = [descriptions[i].strip() for i in keep]
        tokens = tokenize(texts).to(video.device)
        text = self.encode_prompts(tokens, "description")
        logits = F.normalize(video[keep], dim=-1) @ text.T / self.config.temperature
        # Identical texts (a describer can say the same of two still faces) are not negatives.
        same = torch.tensor([[a == b for b in texts] for a in texts], dtype=logits.dtype, device=logits.device)
        targets = same / same.sum(dim=1, keepdim=True)
        return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def count_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def param_groups(self, base_lr: float) -> list[dict]:
        """One group: everything trainable (adapters, temporal model, gate) at the base learning rate."""
        return [{"name": "adapters_temporal_fusion", "params": self.trainable_parameters(), "lr": base_lr}]
