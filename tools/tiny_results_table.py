"""Print issue 18's results table (Markdown) from the runs `tools/tiny_results.sh` writes.

    python tools/tiny_results_table.py [--runs runs/tiny-results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def fold1(metrics: dict | None, protocol: str) -> str:
    if metrics is None:
        return "—"
    test = metrics["protocols"][protocol]["test"] if "protocols" in metrics else metrics
    return f"{test['uar']:.1f} / {test['war']:.1f}"


def folds(summary: dict | None, protocol: str) -> str:
    if summary is None:
        return "—"
    p = summary["protocols"][protocol] if "protocols" in summary else summary
    return f"{p['uar']['mean']:.1f} ± {p['uar']['std']:.1f} / {p['war']['mean']:.1f} ± {p['war']['std']:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/tiny-results"))
    runs = parser.parse_args(argv).runs
    print("| model | protocol | fold 1 UAR / WAR | 5 folds UAR / WAR (mean ± std) |")
    print("| --- | --- | ---: | ---: |")
    zero = runs / "sample-tiny-zeroshot"
    print(f"| zero-shot (no training) | — | {fold1(read(Path(f'{zero}-fold1/metrics.json')), '')} "
          f"| {folds(read(Path(f'{zero}-all/metrics.json')), '')} |")
    for model, name in (("tiny", "FineCLIPER-tiny"), ("tiny-dferclip", "DFER-CLIP-tiny")):
        one, every = read(runs / f"sample-{model}-fold1/metrics.json"), read(runs / f"sample-{model}-all/metrics.json")
        for protocol in ("val", "paper"):
            print(f"| {name} | {protocol} | {fold1(one, protocol)} | {folds(every, protocol)} |")
    seeds = [read(runs / f"seed{s}/sample-tiny-fold1/metrics.json") for s in (1, 2)]
    for protocol in ("val", "paper"):
        cells = [fold1(read(runs / "sample-tiny-fold1/metrics.json"), protocol)] + [fold1(m, protocol) for m in seeds]
        print(f"| FineCLIPER-tiny, seeds 0 / 1 / 2 | {protocol} | {' · '.join(cells)} | |")


if __name__ == "__main__":
    main()
