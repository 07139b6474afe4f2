"""FineCLIPER's ablation rows (trainer/ablate.py runs them): each a configuration named as in the paper.

A row is model switches (`options`, ModelConfig fields), training settings (`settings`, the
loader's), or the model's DFER-CLIP counterpart (`family="dferclip"`, Table 6 row 1), with the
paper's UAR / WAR of the same configuration on DFEW, FERV39k and MAFW where the paper gives one
(arXiv 2407.02157, read from the table images of its project page, HaroldChen19/FineCLIPER-Page:
Table 1 names four configurations: the base model, * with parsing and landmarks, † with the
fine-grained text, *† with both; Tables 4-9 ablate them). Which published number a run is
compared with depends on its backbone and recipe (`published`). trainer/param_count.py counts the
parameters of the same configurations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainer.config import TrainConfig, resolve

LOW_ONLY = dict(use_parsing=False, use_landmarks=False, use_description_branch=False, use_description=False)
Published = dict[str, tuple[float, float]]   # dataset -> (UAR, WAR), %


def _published(dfew: tuple[float, float], ferv39k: tuple[float, float], mafw: tuple[float, float]) -> Published:
    return {"dfew": dfew, "ferv39k": ferv39k, "mafw": mafw}


@dataclass(frozen=True)
class Row:
    name: str
    table: str             # where the paper gives this configuration ("ours": not in the paper)
    what: str
    options: dict[str, Any] = field(default_factory=dict)   # model_options of the row
    settings: dict[str, Any] = field(default_factory=dict)  # training settings of the row (the loader's)
    family: str = "fineclip"                                  # "dferclip": the model's DFER-CLIP counterpart
    paper: Published | None = None   # the paper's UAR / WAR per dataset (CLIP ViT-B/16), None: not published

    @property
    def paper_dfew(self) -> tuple[float, float] | None:
        return self.paper["dfew"] if self.paper else None


BASE = _published((62.81, 72.86), (42.88, 52.01), (42.19, 53.12))   # FineCLIPER (Table 1), low-level only

ROWS: tuple[Row, ...] = (
    Row("all", "Table 1 (FineCLIPER*†), Table 4", "low + middle + high (every cue)", {},
        paper=_published((65.98, 76.21), (45.22, 53.98), (45.01, 56.91))),
    Row("low", "Table 1 (FineCLIPER), Table 4", "low only: the frames", LOW_ONLY, paper=BASE),
    Row("middle", "Table 4", "middle only: parsing masks and landmarks",
        dict(use_video=False, use_description_branch=False, use_description=False),
        paper=_published((61.91, 72.62), (42.92, 52.22), (43.02, 53.11))),
    Row("text_only", "Table 4", "high only: the description alone",
        dict(use_video=False, use_parsing=False, use_landmarks=False, use_description=False),
        paper=_published((63.15, 73.95), (43.13, 52.97), (44.12, 54.60))),
    Row("low_middle", "Table 1 (FineCLIPER*), Table 5", "low + middle",
        dict(use_description_branch=False, use_description=False),
        paper=_published((64.89, 75.05), (44.15, 52.12), (43.02, 54.69))),
    Row("low_high", "Table 1 (FineCLIPER†)", "low + high", dict(use_parsing=False, use_landmarks=False),
        paper=_published((65.72, 75.01), (43.86, 53.02), (43.91, 54.11))),
    Row("middle_high", "not in the paper", "middle + high", dict(use_video=False, use_description=False)),
    Row("low_parsing", "Table 5", "low + parsing masks", {**LOW_ONLY, "use_parsing": True},
        paper=_published((63.66, 73.86), (43.66, 52.00), (42.78, 53.59))),
    Row("low_landmarks", "Table 5", "low + landmarks", {**LOW_ONLY, "use_landmarks": True},
        paper=_published((63.71, 74.16), (43.53, 52.08), (42.56, 53.16))),
    Row("dferclip", "Table 6 row 1", "no adapters: DFER-CLIP", family="dferclip",
        paper=_published((59.61, 71.25), (41.27, 51.65), (39.89, 52.55))),
    Row("frozen_clip", "not in the paper", "low, no adapter anywhere (frozen towers)",
        {**LOW_ONLY, "use_text_adapters": False, "use_visual_adapters": False}),
    Row("text_pos", "Table 6", "low, positive-prompt adapters only",
        {**LOW_ONLY, "use_negative_prompts": False, "use_visual_adapters": False},
        paper=_published((60.32, 71.55), (41.51, 51.70), (40.47, 52.62))),
    Row("text_pos_neg", "Table 6", "low, positive and negative prompt adapters",
        {**LOW_ONLY, "use_visual_adapters": False},
        paper=_published((61.19, 71.95), (42.29, 51.72), (40.71, 52.86))),
    Row("video_adapter", "Table 6", "low, video adapters only", {**LOW_ONLY, "use_text_adapters": False},
        paper=_published((61.88, 72.08), (41.56, 51.77), (41.26, 51.44))),
    Row("negative_less", "Table 7", "low, negative prompt \"less {label}\"",
        {**LOW_ONLY, "label_templates": "label_templates_less.yaml"},
        paper=_published((62.15, 72.51), (42.11, 51.79), (41.97, 52.91))),
    Row("scale_0.3", "Table 9", "low, adapter scale 0.3", {**LOW_ONLY, "adapter_scale": 0.3},
        paper=_published((62.51, 72.68), (42.61, 51.19), (41.84, 52.71))),
    Row("scale_0.7", "Table 9", "low, adapter scale 0.7", {**LOW_ONLY, "adapter_scale": 0.7},
        paper=_published((62.58, 72.70), (42.57, 51.46), (41.76, 53.66))),
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
# Table 8: the full model (`all`) on other backbones; every other published row is ViT-B/16.
ALL_BY_BACKBONE: dict[str, Published] = {
    "fineclip-b32": _published((66.78, 77.39), (46.99, 55.03), (46.79, 57.89)),
    "fineclip-l14": _published((68.01, 78.93), (47.89, 56.41), (47.79, 58.26)),
}
# The paper's tables evaluate on the three datasets; another dataset (the sample) is read against
# DFEW's numbers, for the ordering of the rows only.
PAPER_DATASETS = ("dfew", "ferv39k", "mafw")


def published(row: Row, config: TrainConfig) -> dict[str, Any]:
    """The paper's number for `row` trained as `config`: {"uar", "war", "dataset", "source"}, or
    {"uar": None, "war": None, "note": why there is none}. A number is attached only to a run of
    the backbone it was published for: ViT-B/16 (and the tiny stand-ins, for the ordering), Table 8's
    `all` on ViT-B/32 and L/14; the `dferclip` row only to `dferclip-b32` under RECIPE=reference,
    the DFER-CLIP configuration whose numbers the paper's Table 6 row 1 repeats."""
    dataset = config.dataset if config.dataset in PAPER_DATASETS else "dfew"
    numbers, source = row.paper, row.table
    if row.family == "dferclip":
        if (config.model, config.recipe) != ("dferclip-b32", "reference"):
            return {"uar": None, "war": None,
                    "note": f"no published DFER-CLIP number for {config.model} under RECIPE={config.recipe}: "
                            "the paper's (Table 6 row 1 = DFER-CLIP's Table 1) is dferclip-b32 under RECIPE=reference"}
        source = "Table 6 row 1 (DFER-CLIP, ViT-B/32, its reference code)"
    elif config.model in ALL_BY_BACKBONE:
        if row.name != "all":
            return {"uar": None, "war": None, "note": "the paper ablates this row on ViT-B/16 only"}
        numbers, source = ALL_BY_BACKBONE[config.model], "Table 8"
    if not numbers:
        return {"uar": None, "war": None, "note": "not in the paper"}
    uar, war = numbers[dataset]
    return {"uar": uar, "war": war, "dataset": dataset, "source": source}


def select_rows(names: str) -> list[Row]:
    if names in ("", "every"):
        return list(ROWS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in ROW_NAMES]
    if unknown:
        raise ValueError(f"unknown ablation row(s) {', '.join(unknown)}; rows: {', '.join(ROW_NAMES)}")
    return [row for row in ROWS if row.name in wanted]


def row_config(row: Row, model: str, dataset: str, fold: int, overrides: dict[str, Any]) -> TrainConfig:
    """The training configuration of `row`: the model's preset, `overrides`, then the row's switches.
    The `dferclip` row trains the DFER-CLIP counterpart under DFER-CLIP's own recipe when the
    ablation follows a published one (`paper` or `reference`: DFER-CLIP's is `reference`), else `ours`."""
    if row.family == "dferclip":
        if model not in DFERCLIP_OF:
            raise ValueError(f"row {row.name}: no DFER-CLIP counterpart of {model}; "
                             f"models with one: {', '.join(DFERCLIP_OF)}")
        model, options = DFERCLIP_OF[model], {}
        recipe = "reference" if overrides.get("recipe", "ours") in ("paper", "reference") else "ours"
        overrides = {**overrides, "recipe": recipe}
    else:
        options = row.options
    settings = row.settings if row.family == "fineclip" else {}
    # resolve lays model_options over the preset's: the caller's, then the row's
    options = {**(overrides.get("model_options") or {}), **options}
    return resolve(model, dataset, {**overrides, **settings, "fold": fold, "model_options": options})
