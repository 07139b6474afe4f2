"""FineCLIPER's trainable parameters per configuration, against the paper's Table 1.

    python -m trainer.param_count [--model fineclip-b16] [--json bench/results/param_count_fineclip_b16.json]
    python -m trainer.param_count --presets [--json bench/results/trainable_parameters.json]

The paper (arXiv 2407.02157, Table 1, CLIP ViT-B/16) reports 13M tunable parameters for the
base model, 19M with parsing and landmarks, 14M with the fine-grained text and 20M for the full
model. Ours are counted on the same configurations (the ablation rows `low`, `low_middle`,
`low_high`, `all` of trainer/ablate.py) built from a random CLIP of the model's architecture
(the count does not depend on the weights, so nothing is downloaded), with the part each
parameter belongs to. The paper does not give its bottleneck size or temporal model, so equal
counts are not expected; docs/training.md quotes this table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from pipeline.inputs.datasets import DATASETS
from trainer.ablation_rows import ROWS
from trainer.models import build_model, model_preset, trainable_parts
from trainer.fineclip import FineCLIPER

# ablation row → (the paper's name of the configuration, its tunable parameters in millions)
PAPER_TABLE_1 = {"low": ("FineCLIPER (base)", 13), "low_middle": ("FineCLIPER* (+ parsing, landmarks)", 19),
                 "low_high": ("FineCLIPER† (+ fine-grained text)", 14), "all": ("FineCLIPER*† (full)", 20)}


def checkout_commit() -> str | None:
    """The commit of the checkout the count was made in (docs quote the table with it), or None."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def count_table(model_name: str, classes) -> list[dict]:
    if model_preset(model_name).family is not FineCLIPER:
        raise ValueError(f"{model_name} is not a FineCLIPER model")
    rows = {row.name: row for row in ROWS}
    table = []
    for name, (paper_name, paper_m) in PAPER_TABLE_1.items():
        model = build_model(model_name, classes, pretrained=False, **rows[name].options)
        counts = {part.removeprefix("towers."): n for part, n in trainable_parts(model).items()}
        table.append({"row": name, "paper_name": paper_name, "paper_millions": paper_m,
                      "trainable": sum(counts.values()), "parts": counts})
    return table


def preset_counts(dataset: str) -> dict[str, int]:
    """Trainable parameters of every model as its preset trains it on `dataset` (recipe `ours`:
    its frames and `model_options`), random weights of the same architecture."""
    from trainer.config import resolve
    from trainer.models import MODELS

    classes = DATASETS[dataset].classes
    return {name: sum(trainable_parts(resolve(name, dataset).build_model(classes, pretrained=False)).values())
            for name in MODELS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.param_count", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="fineclip-b16")
    parser.add_argument("--dataset", default="dfew", help="its classes size the prompts (no parameters depend on it)")
    parser.add_argument("--json", type=Path, help="also write the table here")
    parser.add_argument("--presets", action="store_true",
                        help="instead: every model's trainable parameters as its preset trains it on --dataset")
    args = parser.parse_args(argv)
    if args.presets:
        counts = preset_counts(args.dataset)
        for name, n in counts.items():
            print(f"{name:22s} {n:>12,d}")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"dataset": args.dataset, "recipe": "ours", "torch": torch.__version__,
                                             "commit": checkout_commit(), "trainable": counts}, indent=1) + "\n")
        return 0
    try:
        table = count_table(args.model, DATASETS[args.dataset].classes)
    except (KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"| configuration (paper, Table 1) | ablation row | paper | {args.model} | parts |")
    print("| --- | --- | ---: | ---: | --- |")
    for r in table:
        detail = ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in r["parts"].items())
        print(f"| {r['paper_name']} | `{r['row']}` | {r['paper_millions']}M | {r['trainable'] / 1e6:.1f}M | {detail} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "torch": torch.__version__, "commit": checkout_commit(),
                                         "rows": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
