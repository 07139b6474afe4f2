"""`make zero-shot`: a CLIP backbone with no training, class prompts against clips, on a fold's test split.

    python -m trainer.zero_shot --dataset sample --model tiny [--fold 1|all] [--shards shards/sample]

The baseline every trained number is read against (CLIP's own zero-shot protocol, on video):
each test clip's embedding is the mean of its frames' image embeddings from the frozen vision
tower, and the predicted class is the positive prompt of prompts/label_templates.yaml
("A person with an expression of {label}.") nearest in cosine. Built as the model's own
class with every trainable part neutral, so it is exactly the backbone: adapters start at
zero, no temporal model (`temporal_layers=0`), the video branch alone, no description loss.
Failed test clips count as wrong, as in training. Writes
runs/<name>-zeroshot-fold<k>/metrics.json (and -all with mean ± std over folds), where <name> is
`--name` or, as for `make train`, `<dataset>-<model>` with a hash of any `--set` overrides.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from trainer.config import parse_overrides, resolve
from trainer.data import dataset_folds, make_loader, read_index
from trainer.defaults import choose_model, dataset_name, default_shards
from trainer.metrics import evaluate, unscored_test_labels
from trainer.models import model_preset
from trainer.run_dir import add_run_options, experiment_name
from trainer.fineclip import FineCLIPER

# The model settings that make FineCLIPER's untrained forward the plain CLIP zero-shot classifier.
NEUTRAL = dict(temporal_layers=0, use_parsing=False, use_landmarks=False, use_description=False,
               use_description_branch=False, use_negative_prompts=False, supervision="labels")


def zero_shot(dataset: str, model: str, fold: int, overrides: dict | None = None, name: str | None = None) -> dict:
    config = resolve(model, dataset, {**(overrides or {}), "fold": fold})
    if model_preset(model).family is not FineCLIPER:
        raise ValueError(f"zero-shot uses FineCLIPER's class prompts; give a fineclip-* or tiny model, not {model!r} "
                         f"(the backbone is the same CLIP)")
    classes = read_index(config.shard_dir)["classes"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = config.build_model(classes, **NEUTRAL).to(device)
    loader = make_loader(config.data_config(net), "test", classes)
    unscored = unscored_test_labels(config.shard_dir, loader.dataset.partitions, classes)
    metrics = evaluate(net, loader, device, classes, config.autocast(device), normalise=config.normalise,
                       unscored=unscored)
    metrics.pop("description_loss", None)
    result = {"dataset": dataset, "model": model, "clip": net.config.clip, "fold": fold, "protocol": "zero-shot",
              **metrics}
    out = Path(config.runs_dir) / f"{experiment_name(config, name)}-zeroshot-fold{fold}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{dataset} fold {fold}, zero-shot {net.config.clip}: UAR {metrics['uar']:.2f}  WAR {metrics['war']:.2f}  "
          f"({metrics['samples']} clips) -> {out}/metrics.json")
    return result


def zero_shot_folds(dataset: str, model: str, folds: list[int], overrides: dict | None = None,
                    name: str | None = None) -> dict:
    results = [zero_shot(dataset, model, k, overrides, name) for k in folds]
    summary = {"dataset": dataset, "model": model, "folds": folds, "protocol": "zero-shot"}
    for metric in ("uar", "war"):
        values = np.array([r[metric] for r in results])
        summary[metric] = {"mean": float(values.mean()), "std": float(values.std()), "per_fold": values.tolist()}
    config = resolve(model, dataset, overrides or {})
    out = Path(config.runs_dir) / f"{experiment_name(config, name)}-zeroshot-all"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{len(folds)} folds, zero-shot: UAR {summary['uar']['mean']:.2f} ± {summary['uar']['std']:.2f}  "
          f"WAR {summary['war']['mean']:.2f} ± {summary['war']['std']:.2f} -> {out}/metrics.json")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.zero_shot", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="sample", help="mafw | dfew | ferv39k | sample | path/to/manifest.csv")
    parser.add_argument("--fold", default="1", help="1..5, or all")
    parser.add_argument("--shards", default="")
    add_run_options(parser)   # --model, --name, --set (TRAIN_ARGS)
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set, args.shards)
    try:
        model, _ = choose_model(args.model, args.dataset)
        dataset = dataset_name(args.dataset)
        if args.fold == "all":
            index = read_index(overrides.get("shards") or default_shards(args.dataset))
            zero_shot_folds(dataset, model, dataset_folds(index), overrides, args.name)
        else:
            zero_shot(dataset, model, int(args.fold), overrides, args.name)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
