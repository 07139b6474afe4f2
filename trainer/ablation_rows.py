"""FineCLIPER's ablation rows (trainer/ablate.py runs them): each a configuration named as in the paper.

A row is model switches (`options`, ModelConfig fields), training settings (`settings`, the
loader's), or the model's DFER-CLIP counterpart (`family="dferclip"`, Table 6 row 1), with the
paper's DFEW UAR / WAR of the same row where the paper gives one (arXiv 2407.02157, Tables 4-9;
read from the project page's table images). trainer/param_count.py counts the parameters of
the same configurations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainer.config import TrainConfig, resolve

LOW_ONLY = dict(use_parsing=False, use_landmarks=False, use_description_branch=False, use_description=False)


@dataclass(frozen=True)
class Row:
    name: str
    table: str
    what: str
    options: dict[str, Any] = field(default_factory=dict)   # model_options of the row
    settings: dict[str, Any] = field(default_factory=dict)  # training settings of the row (the loader's)
    family: str = "fineclip"                                  # "dferclip": the model's DFER-CLIP counterpart
    paper_dfew: tuple[float, float] | None = None             # the paper's UAR / WAR on DFEW, for the ordering


ROWS: tuple[Row, ...] = (
    Row("all", "Table 4", "low + middle + high (every cue)", {}, paper_dfew=(65.98, 76.21)),
    Row("low", "Table 4", "low only: the frames", LOW_ONLY, paper_dfew=(62.81, 72.86)),
    Row("middle", "Table 4", "middle only: parsing masks and landmarks",
        dict(use_video=False, use_description_branch=False, use_description=False), paper_dfew=(61.91, 72.62)),
    Row("text_only", "Table 4", "high only: the description alone",
        dict(use_video=False, use_parsing=False, use_landmarks=False, use_description=False),
        paper_dfew=(63.15, 73.95)),
    Row("low_middle", "Table 4", "low + middle", dict(use_description_branch=False, use_description=False),
        paper_dfew=(64.89, 75.05)),
    Row("low_high", "Table 4", "low + high", dict(use_parsing=False, use_landmarks=False)),
    Row("middle_high", "Table 4", "middle + high", dict(use_video=False, use_description=False)),
    Row("low_parsing", "Table 5", "low + parsing masks", {**LOW_ONLY, "use_parsing": True}, paper_dfew=(63.66, 73.86)),
    Row("low_landmarks", "Table 5", "low + landmarks", {**LOW_ONLY, "use_landmarks": True},
        paper_dfew=(63.71, 74.16)),
    Row("dferclip", "Table 6", "no adapters: DFER-CLIP (row 1)", family="dferclip", paper_dfew=(59.61, 71.25)),
    Row("frozen_clip", "Table 6", "low, no adapter anywhere (frozen towers)",
        {**LOW_ONLY, "use_text_adapters": False, "use_visual_adapters": False}),
    Row("text_pos", "Table 6", "low, positive-prompt adapters only",
        {**LOW_ONLY, "use_negative_prompts": False, "use_visual_adapters": False}, paper_dfew=(60.32, 71.55)),
    Row("text_pos_neg", "Table 6", "low, positive and negative prompt adapters",
        {**LOW_ONLY, "use_visual_adapters": False}, paper_dfew=(61.19, 71.95)),
    Row("video_adapter", "Table 6", "low, video adapters only", {**LOW_ONLY, "use_text_adapters": False},
        paper_dfew=(61.88, 72.08)),
    Row("negative_less", "Table 7", "low, negative prompt \"less {label}\"",
        {**LOW_ONLY, "label_templates": "label_templates_less.yaml"}, paper_dfew=(62.15, 72.51)),
    Row("scale_0.3", "Table 9", "low, adapter scale 0.3", {**LOW_ONLY, "adapter_scale": 0.3}, paper_dfew=(62.51, 72.68)),
    Row("scale_0.7", "Table 9", "low, adapter scale 0.7", {**LOW_ONLY, "adapter_scale": 0.7}, paper_dfew=(62.58, 72.70)),
    Row("pairwise_negatives", "ours", "every cue, our pairwise negative-prompt loss", dict(negative_loss="pairwise")),
    Row("mean_fusion", "ours", "every cue, equal fixed weights instead of the gate", dict(fusion="mean")),
    Row("figure_layout", "ours", "every cue, the figure's layout: no temporal transformer, one adapter per text block",
        dict(temporal_layers=0, text_adapters_per_block=1)),
    Row("landmarks_on_face", "ours", "every cue, landmarks drawn as points over the face (the figure)",
        settings={"landmark_style": "points_on_face"}),
)
ROW_NAMES = tuple(row.name for row in ROWS)

# FineCLIPER model → its DFER-CLIP counterpart on the same CLIP (Table 6, row 1).
DFERCLIP_OF = {"fineclip-b16": "dferclip-b16", "fineclip-b32": "dferclip-b32", "tiny": "tiny-dferclip",
               "tiny-random": "tiny-random-dferclip"}


def select_rows(names: str) -> list[Row]:
    if names in ("", "every"):
        return list(ROWS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in ROW_NAMES]
    if unknown:
        raise ValueError(f"unknown ablation row(s) {', '.join(unknown)}; rows: {', '.join(ROW_NAMES)}")
    return [row for row in ROWS if row.name in wanted]


def row_config(row: Row, model: str, dataset: str, fold: int, overrides: dict[str, Any]) -> TrainConfig:
    """The training configuration of `row`: the model's preset, `overrides`, then the row's switches."""
    if row.family == "dferclip":
        if model not in DFERCLIP_OF:
            raise ValueError(f"row {row.name}: no DFER-CLIP counterpart of {model}; "
                             f"models with one: {', '.join(DFERCLIP_OF)}")
        model, options = DFERCLIP_OF[model], {}
    else:
        options = row.options
    settings = row.settings if row.family == "fineclip" else {}
    # resolve lays model_options over the preset's: the caller's, then the row's
    options = {**(overrides.get("model_options") or {}), **options}
    return resolve(model, dataset, {**overrides, **settings, "fold": fold, "model_options": options})
