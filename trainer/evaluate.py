"""`make eval`: a trained checkpoint on a fold's test split, or on another dataset (zero-shot transfer).

    python -m trainer.evaluate --checkpoint runs/mafw-fineclip-b16-fold1/best.pt [--fold 1]
    python -m trainer.evaluate --checkpoint runs/sample-tiny-fold1/best.pt --dataset dfew --split all
    python -m trainer.evaluate --dataset mafw --model fineclip-b16 --fold all [--name NAME] [--set lr=1e-3]

Without `--checkpoint`, the run is found as `make train` named it from the same options
(trainer/run_dir.py), and its best.pt is scored on its own test fold; `--fold all` scores each
fold's run.

The model is rebuilt from the configuration stored in the checkpoint, with the classes of the
dataset evaluated (FineCLIPER's class prompts are text, so a model trained on one label set
can be scored on another), and its trained weights are loaded. Writes metrics JSON and a
confusion-matrix PNG next to the checkpoint, or into `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from trainer.config import from_dict, parse_overrides
from trainer.defaults import dataset_name, default_shards
from trainer.run_dir import add_run_options, trained_runs
from trainer.data import make_loader, read_index
from trainer.checkpoint import load_checkpoint
from trainer.metrics import evaluate, expected_test_clips, plot_confusion, unscored_test_labels


def evaluate_checkpoint(checkpoint: Path, dataset: str | None = None, shards: str | None = None,
                        fold: int | None = None, split: str = "test", out: Path | None = None) -> dict:
    state = load_checkpoint(checkpoint)
    config = from_dict(state["config"])
    if dataset:
        config = replace(config, dataset=dataset, shards=shards or "")
    elif shards:
        config = replace(config, shards=shards)
    if fold is not None:
        config = replace(config, fold=fold)
    classes = read_index(config.shard_dir)["classes"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = config.build_model(classes)
    class_specific = {k for k, v in model.state_dict().items() if k in state["model"]
                      and v.shape != state["model"][k].shape}
    if class_specific:   # e.g. DFER-CLIP's per-class context: meaningless for another label set
        raise ValueError(f"{checkpoint} has class-specific weights ({', '.join(sorted(class_specific)[:3])}…) "
                         f"for {len(state['classes'])} classes; it cannot score {len(classes)} other classes")
    model.load_state_dict(state["model"], strict=False)
    model.to(device)
    data = config.data_config(model)
    autocast = config.autocast(device)
    splits = ["train", "val", "test"] if split == "all" else [split]
    labels, predictions, all_unscored = [], [], []
    metrics = None
    for name in splits:
        loader = make_loader(data, name, classes)
        unscored = unscored_test_labels(config.shard_dir, loader.dataset.partitions, classes) if name == "test" else []
        expected = expected_test_clips(config.shard_dir, loader.dataset.partitions, classes) if name == "test" else None
        part = evaluate(model, loader, device, classes, autocast, normalise=config.normalise, unscored=unscored,
                        expected=expected)
        matrix = np.array(part["confusion_matrix"])
        # failed in preprocessing or in the loader: both count as wrong
        all_unscored += [classes.index(c) for c, n in part["unscored_per_class"].items() for _ in range(n)]
        labels.append(np.repeat(np.arange(len(classes)), matrix.sum(1)))
        predictions.append(np.concatenate([np.repeat(np.arange(len(classes)), row) for row in matrix]))
        metrics = part
    if len(splits) > 1:
        from trainer.metrics import recognition_metrics

        metrics = recognition_metrics(np.concatenate(labels), np.concatenate(predictions), classes, all_unscored)
    result = {"checkpoint": str(checkpoint), "trained_on": state["config"]["dataset"], "dataset": config.dataset,
              "fold": config.fold, "split": split, **metrics}
    out = out or checkpoint.parent
    out.mkdir(parents=True, exist_ok=True)
    stem = f"eval-{config.dataset}-fold{config.fold}-{split}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    plot_confusion(np.array(metrics["confusion_matrix"]), classes, out / f"{stem}.png",
                   f"{config.dataset} {split}: UAR {metrics['uar']:.1f} WAR {metrics['war']:.1f}")
    print(f"{config.dataset} fold {config.fold} {split}: UAR {metrics['uar']:.2f}  WAR {metrics['war']:.2f}"
          f"  ({metrics['samples']} clips) -> {out / stem}.json")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path,
                        help="a checkpoint; default: the best.pt of the run make train wrote with the same "
                             "--dataset, --model, --fold, --name and --set options")
    parser.add_argument("--dataset", help="the dataset evaluated (with --checkpoint, default: the one it was "
                                          "trained on; without, also the run's dataset)")
    parser.add_argument("--shards", help="its shard folder (default shards/<dataset>)")
    parser.add_argument("--fold", help="the test fold, or all (without --checkpoint: every fold's run); "
                                       "default: the checkpoint's own, or 1")
    parser.add_argument("--split", choices=["test", "val", "train", "all"], default="test")
    parser.add_argument("--out", type=Path)
    add_run_options(parser)
    args = parser.parse_args(argv)
    try:
        if args.checkpoint:
            if args.fold == "all":
                raise ValueError("--fold all scores each fold's own run: leave --checkpoint out (a checkpoint "
                                 "was trained for one fold)")
            dataset = dataset_name(args.dataset) if args.dataset else None
            shards = args.shards or (default_shards(args.dataset) if args.dataset else None)
            evaluate_checkpoint(args.checkpoint, dataset, shards, int(args.fold) if args.fold else None,
                                args.split, args.out)
            return 0
        dataset = args.dataset or "sample"
        overrides = parse_overrides(args.set, args.shards or "")
        for folder in trained_runs(dataset, args.model, args.fold, overrides, args.name):
            evaluate_checkpoint(folder / "best.pt", split=args.split, out=args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
