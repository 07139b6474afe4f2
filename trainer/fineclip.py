"""FineCLIPER (ACM MM 2024, arXiv 2407.02157): a frozen CLIP tuned with adapters and fine-grained cues.

Per clip, three levels of cues become branches of one embedding (the paper's framework figure):
- low: the frames through the frozen vision tower with the "video" adapters, then a temporal
  transformer;
- middle: the parsing masks and landmark images through the same tower with their own
  adapters, averaged over time;
- high: the clip's description (an MLLM's, or our geometric describer's) through the frozen
  text tower with the "description" adapters. It is a branch at test time as in training, so
  the logits see it; a clip without a description has it masked out of its fusion.
The branch embeddings are fused with weights a small gate computes from them. Each class has
a positive prompt ("A person with an expression of {label}.") and a negative one ("... of no
{label}."), encoded by the frozen text tower with separate adapters; logits are scaled
cosines between the fused embedding and the positive prompts. Every branch can be switched
off (`use_video`, `use_parsing`, `use_landmarks`, `use_description_branch`) for the paper's
ablations.

Losses (`parts`, unweighted; `loss` = classification + weights × the others):
- classification: cross-entropy over the positive-prompt logits.
- negative, `negative_loss="softmax"` (the reference): cross-entropy over one softmax of all
  2C prompts, positive and negative, with the clip's own positive prompt as the target. Every
  "no {label}" prompt ends up below the positive prompts, lowest for the clip's own class, as
  the paper's figure of positive and negative similarities after training shows (the paper
  gives no equation; this is our reading of the figure).
- negative, `negative_loss="pairwise"` (ours, before the reference existed): for every class c,
  a two-way choice between "c" and "not c": the clip should be nearer "c" than "not c" for its
  own class and nearer "not c" than "c" for every other class (the own class and the mean over
  the others count half each). This trains "not c" as a meaning of its own, but it asks for
  the opposite of the figure on the non-target classes.
  Logits stay on the positive prompts in both, as in the paper.
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
        # visual branches (vision tower), then the description branch (text tower): the fused order
        self.visual_branches = (["video"] * config.use_video + ["parsing"] * config.use_parsing
                                + ["landmarks"] * config.use_landmarks)
        self.branches = self.visual_branches + ["description"] * config.use_description_branch
        uses_descriptions = config.use_description or config.use_description_branch
        text_sets = ["positive"] + ["negative"] * config.use_negative_prompts + ["description"] * uses_descriptions
        self.towers = AdaptedCLIP(clip,
                                  visual_sets=self.visual_branches if config.use_visual_adapters else (),
                                  text_sets=text_sets if config.use_text_adapters else (),
                                  ratio=config.adapter_ratio, mlp_scale=config.adapter_scale,
                                  text_per_block=config.text_adapters_per_block)
        dim = self.towers.embed_dim
        self.temporal = (TemporalTransformer(dim, config.temporal_layers, config.num_frames,
                                             block=config.temporal_block)
                         if config.temporal_layers > 0 and config.use_video else None)
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
        keys = {BRANCH_INPUTS[b] for b in self.visual_branches} | {"labels"}
        uses_descriptions = self.config.use_description or self.config.use_description_branch
        return (keys | {"descriptions"}) if uses_descriptions else keys

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

    def encode_descriptions(self, descriptions: Sequence[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The description branch: (B, D) text embeddings, and a (B,) mask of the clips that have one.

        An empty or blank description is not encoded: its row is zero and its mask False, so
        `fuse` leaves the branch out for that clip instead of fusing the embedding of "".
        """
        stripped = [(text or "").strip() for text in descriptions]
        present = torch.tensor([bool(text) for text in stripped], device=device)
        out = torch.zeros(len(descriptions), self.towers.embed_dim, device=device)
        if present.any():
            texts = [text for text in stripped if text]
            encoded = self.encode_prompts(tokenize(texts).to(device), "description")
            out = out.to(encoded.dtype).index_put((present.nonzero().squeeze(1),), encoded)
        return out, present

    def fuse(self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor] | None = None,
             branches: Sequence[str] | None = None) -> torch.Tensor:
        """Unit-norm weighted sum of the unit-norm branch embeddings.

        `present[b]` (B,) masks a branch out of the clips where it is missing (its weight is 0
        and the others share the whole); `branches` fuses a subset (the rest count as missing).
        A clip with no branch at all gets a zero embedding (uniform logits).
        """
        branches = self.branches if branches is None else branches
        present = present or {}
        reference = next(embeddings[b] for b in branches)
        rows = reference.shape[0]
        stacked, mask = [], []
        for b in self.branches:
            if b in branches:
                stacked.append(F.normalize(embeddings[b], dim=-1))
                mask.append(present.get(b, torch.ones(rows, dtype=torch.bool, device=reference.device)))
            else:
                stacked.append(torch.zeros_like(reference))
                mask.append(torch.zeros(rows, dtype=torch.bool, device=reference.device))
        stacked, mask = torch.stack(stacked, dim=1), torch.stack(mask, dim=1)  # (B, n, D), (B, n)
        stacked = stacked * mask.unsqueeze(-1)
        if self.gate is not None:
            scores = self.gate(stacked.flatten(1).to(self.gate[0].weight.dtype)).float()
            weights = scores.masked_fill(~mask, -torch.inf).softmax(dim=-1).nan_to_num(0.0)
        else:
            weights = mask.float() / mask.sum(dim=1, keepdim=True).clamp(min=1)
        return F.normalize((weights.unsqueeze(-1).to(stacked.dtype) * stacked).sum(dim=1), dim=-1)

    def encode_prompts(self, tokens: torch.Tensor, text_set: str) -> torch.Tensor:
        return F.normalize(self.towers.encode_text(tokens, self._text_set(text_set)), dim=-1)

    def forward(self, batch: dict) -> dict:
        embeddings, present = {}, {}
        for branch in self.visual_branches:
            key = BRANCH_INPUTS[branch]
            if key not in batch:
                raise KeyError(f"FineCLIPER with the {branch} branch on needs batch[{key!r}] "
                               f"(or turn the branch off in ModelConfig)")
            embeddings[branch] = self.encode_branch(branch, batch[key])
        descriptions = batch.get("descriptions")
        if self.config.use_description_branch:
            if descriptions is None:
                raise KeyError("FineCLIPER with the description branch on needs batch['descriptions'] (a list of "
                               "strings, '' for a clip without one), or use_description_branch=False")
            embeddings["description"], present["description"] = self.encode_descriptions(
                descriptions, self.positive_tokens.device)
        clip_embedding = self.fuse(embeddings, present)
        zero_shot = self.config.supervision == "descriptions"
        # Zero-shot: class prompts go through the text adapters the descriptions trained.
        positive = self.encode_prompts(self.positive_tokens, "description" if zero_shot else "positive")
        logits = clip_embedding @ positive.T / self.config.temperature
        out: dict = {"logits": logits, "parts": {}}
        labels = batch.get("labels")
        if zero_shot and descriptions is not None:
            # trained on sample-level text only: the labels are never seen (in evaluation the same
            # loss is reported, so that a zero-shot run can select its epoch without labels). The
            # visual branches alone are aligned with the text: the description branch would see itself.
            visual = self.fuse(embeddings, present, branches=self.visual_branches)
            description = self.description_loss(visual, descriptions)
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
        if self.config.use_description and descriptions is not None and self.visual_branches:
            # aligned with the video branch, or the fused visual branches when the video branch is off
            visual = (embeddings["video"] if "video" in embeddings
                      else self.fuse(embeddings, present, branches=self.visual_branches))
            description = self.description_loss(visual, descriptions)
            if description is not None:
                parts["description"] = description
                weighted = weighted + self.config.description_loss_weight * description
        out["loss"] = weighted
        out["parts"] = {name: value.detach() for name, value in parts.items()}
        return out

    def negative_prompt_loss(self, clip_embedding: torch.Tensor, positive: torch.Tensor,
                             negative: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The negative-prompt loss of `config.negative_loss` (module docstring); inputs unit-norm, (B, D) and (C, D)."""
        if self.config.negative_loss == "softmax":
            prompts = torch.cat([positive, negative])  # (2C, D): the positives first, so label c is prompt c
            return F.cross_entropy(clip_embedding @ prompts.T / self.config.temperature, labels)
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
