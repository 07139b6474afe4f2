"""The few lines `make demo` ends with: what the pipeline made, how the model did, where to look.

    python -m trainer.run_summary --shards shards/sample --run runs/sample-tiny-fold1 [--sheet PNG ...]
        [--predictions runs/sample-tiny-fold1/predict-fold1.json]

Reads only what the pipeline and the trainer wrote (the dataset folder's index.json, the run
folder's metrics.json, and `trainer.predict --manifest ... --out` reports), so it can be
pointed at any finished run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def protocol_note(metrics: dict, name: str) -> str:
    """How a protocol chose its epoch, in a few words (metrics.json of runs before protocols: '')."""
    protocol = metrics.get("protocols", {}).get(name)
    if not protocol:
        return ""
    return f"protocol {name}: epoch {protocol['epoch']}, {protocol['selection'].split(' (')[0]}"


def summary_lines(shards: Path, run: Path, sheets: list[Path], predictions: Path | None = None) -> list[str]:
    index = json.loads((shards / "index.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    failures = ", ".join(f"{reason} {n}" for reason, n in index["failures"].items()) or "none"
    test = metrics["test"]
    chance = 100 / len(index["classes"])
    lines = [
        f"clips      {index['ok']} ok, {index['failed']} failed ({failures})",
        f"shards     {len(index['shards'])} in {shards}, {index['bytes'] / 2**20:.1f} MiB"
        + ("" if index["complete"] else f", NOT complete: {len(index['missing_shards'])} missing"),
        f"model      {metrics['model']}, {metrics['trainable_parameters'] / 1e6:.2f} M trainable, "
        f"{metrics['epochs']} epochs",
        f"test fold  {metrics['fold']} ({test['samples']} clips"
        + (f", {test['unscored']} failed preprocessing, counted as wrong" if test.get("unscored") else "")
        + f"): UAR {test['uar']:.1f} %, WAR {test['war']:.1f} % (chance {chance:.1f} %), "
        f"{protocol_note(metrics, 'val')}",
        f"run        {run}: metrics.json, confusion.png, curves.png, best.pt",
    ]
    paper = metrics.get("protocols", {}).get("paper")
    if paper:
        lines.insert(4, f"paper      UAR {paper['test']['uar']:.1f} %, WAR {paper['test']['war']:.1f} %: "
                        f"{protocol_note(metrics, 'paper')}")
    if predictions is not None:
        report = json.loads(predictions.read_text())
        lines.append(f"predict    true class first for {report['true_class_first']} of {report['clips']} "
                     f"{report['partition']} clips, each predicted from its raw video"
                     + (f" ({report['unreadable']} unreadable, counted as wrong)" if report["unreadable"] else "")
                     + f": {predictions}")
    lines += [f"sheet      {sheet}" for sheet in sheets if sheet.is_file()]
    lines.append(f"next       make predict VIDEO=<a video> CHECKPOINT={run / 'best.pt'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.run_summary", description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=Path, required=True, help="the dataset folder the run trained on")
    parser.add_argument("--run", type=Path, required=True, help="the run folder (holds metrics.json)")
    parser.add_argument("--sheet", type=Path, action="append", default=[], help="contact sheets to point to")
    parser.add_argument("--predictions", type=Path, help="a `trainer.predict --manifest ... --out` report")
    args = parser.parse_args(argv)
    try:
        lines = summary_lines(args.shards, args.run, args.sheet, args.predictions)
    except FileNotFoundError as err:
        print(f"error: {err.filename} is missing (has the pipeline or the run finished?)", file=sys.stderr)
        return 1
    print("\n".join(["", "== summary " + "=" * 60, *lines, "=" * 71]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
