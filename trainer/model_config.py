"""The model half of a run's configuration: every switch of FineCLIPER and DFER-CLIP.

One frozen dataclass for both families, so a run folder records the model the same way
whichever was trained; fields a family does not use are ignored by it (grouped below).
Presets per model name live in trainer/models.py; the command line overrides fields by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.resources import resolve_prompt_file
from trainer.temporal import TEMPORAL_BLOCKS

FUSIONS = ("learned", "mean")
NEGATIVE_LOSSES = ("softmax", "pairwise")
TRAIN_CLIP = ("none", "vision", "all")


@dataclass(frozen=True)
class ModelConfig:
    # --- both families ---
    clip: str = "ViT-B/16"  # a name in trainer/clip_loader.py (CLIP_URLS, or "tiny")
    num_frames: int = 16  # the longest clip the temporal positional embedding covers
    temporal_layers: int = 1  # 0: mean of the frame embeddings, no temporal parameters
    temperature: float = 0.01  # logits = cosine / temperature (CLIP's trained scale is ~100)
    temporal_block: str = "clip"  # "clip": OpenAI's block (ours); "dferclip": DFER-CLIP's (trainer/temporal.py)

    # --- FineCLIPER ---
    use_video: bool = True  # the frames through the vision tower (low level; off only for ablations)
    use_parsing: bool = True  # face-parsing masks through the vision tower (own adapters)
    use_landmarks: bool = True  # landmark images through the vision tower (own adapters)
    use_description: bool = True  # align the motion description with the video embedding (a training loss)
    # the description as a branch of the prediction (high level; FineCLIPER's framework figure):
    # through the text tower ("description" adapters), fused with the visual branches in training
    # and at test time. A clip without a description has the branch masked out of its fusion.
    use_description_branch: bool = True
    use_negative_prompts: bool = True  # "... of no {label}." prompts and their loss
    use_text_adapters: bool = True  # off: frozen text tower for prompts and descriptions
    use_visual_adapters: bool = True  # off: frozen vision tower for every branch
    fusion: str = "learned"  # "learned": input-dependent branch weights; "mean": equal weights
    # Which CLIP weights train besides the adapters. "none" is FineCLIPER (CLIP stays frozen);
    # "vision" is for a random CLIP (tiny-random): its vision tower learns from scratch while its
    # text tower stays a fixed random encoder, so the class prompts cannot collapse onto one point.
    train_clip: str = "none"
    supervision: str = "labels"  # "labels", or "descriptions": zero-shot training on sample-level text
    # adapters per text-tower block: 2 (ours: after attention and beside the MLP, as in the vision
    # tower) or 1 (after attention only: the paper's framework figure draws one per text block)
    text_adapters_per_block: int = 2
    adapter_ratio: float = 0.125  # bottleneck = round(tower width * ratio)
    adapter_scale: float = 0.5  # scale of the adapter parallel to each block's MLP
    # "softmax" (the reference: the paper's negative-similarity figure): one softmax over all 2C
    # prompts, the clip's own positive prompt the target, so every "no {label}" prompt is pushed
    # away; "pairwise" (ours): per class "c" vs "not c", "not c" the answer for the other classes.
    negative_loss: str = "softmax"
    negative_loss_weight: float = 1.0
    description_loss_weight: float = 1.0
    label_templates: str = "label_templates.yaml"  # a file of prompts/, or a path

    # --- DFER-CLIP ---
    context_tokens: int = 8  # learnable context vectors per class, in front of its description
    # our descriptions (a file of prompts/), or a path: a YAML mapping class -> text, a
    # text file with one description per line in class order, or DFER-CLIP's models/Text.py
    # (read, never executed: the list class_descriptor_<number of classes>)
    class_descriptions: str = "dferclip_class_descriptions.yaml"
    image_encoder_lr_scale: float = 0.01  # image encoder lr = base lr * this (1e-3 → 1e-5)
    context_lr_scale: float = 1.0  # context vectors' lr = base lr * this (reference: 1e-2 * 0.1 = 1e-3)

    def __post_init__(self) -> None:
        if self.supervision not in ("labels", "descriptions"):
            raise ValueError(f"supervision must be 'labels' or 'descriptions', got {self.supervision!r}")
        if self.supervision == "descriptions" and not self.use_description:
            raise ValueError("supervision='descriptions' (zero-shot) needs use_description=True")
        if self.train_clip not in TRAIN_CLIP:
            raise ValueError(f"train_clip must be one of {TRAIN_CLIP}, got {self.train_clip!r}")
        if self.temporal_block not in TEMPORAL_BLOCKS:
            raise ValueError(f"temporal_block must be one of {TEMPORAL_BLOCKS}, got {self.temporal_block!r}")
        if self.supervision == "descriptions" and not (self.use_video or self.use_parsing or self.use_landmarks):
            raise ValueError("supervision='descriptions' (zero-shot) needs a visual branch to align with the descriptions")
        if not (self.use_video or self.use_parsing or self.use_landmarks or self.use_description_branch):
            raise ValueError("FineCLIPER needs at least one branch: use_video, use_parsing, use_landmarks "
                             "or use_description_branch")
        if self.text_adapters_per_block not in (1, 2):
            raise ValueError(f"text_adapters_per_block must be 1 or 2, got {self.text_adapters_per_block}")
        if self.negative_loss not in NEGATIVE_LOSSES:
            raise ValueError(f"negative_loss must be one of {NEGATIVE_LOSSES}, got {self.negative_loss!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.temporal_layers < 0 or self.num_frames < 1 or self.context_tokens < 1:
            raise ValueError("temporal_layers must be >= 0, num_frames and context_tokens >= 1")
        if not 0 < self.adapter_ratio <= 1 or self.temperature <= 0:
            raise ValueError("adapter_ratio must be in (0, 1] and temperature > 0")

    def prompt_file(self, path: str) -> Path:
        """A prompt file named in this config (see pipeline.resources.resolve_prompt_file)."""
        return resolve_prompt_file(path)
