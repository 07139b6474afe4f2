"""`make ablate`: FineCLIPER's ablation tables, one training run per row, into one JSON and Markdown table.

    python -m trainer.ablate --dataset sample --model tiny [--fold 1|all] [--rows all,text_only] [--set epochs=5]
        [--name NAME]

Each row is a FineCLIPER configuration named as in the paper (arXiv 2407.02157):
- Table 4, cue levels: `low` (frames), `middle` (parsing masks and landmarks), `text_only`
  (the clip's description alone: the paper's "High-level Only"), the pairs `low_middle`,
  `low_high`, `middle_high`, and `all` (every cue: the headline model);
- Table 5, middle-level cues on the low-level model: `low_parsing`, `low_landmarks`;
- Table 6, adapters on the low-level model: `dferclip` (row 1, "no adapters", which the paper's
  numbers equal DFER-CLIP's: our DFER-CLIP on the same backbone), `frozen_clip` (no adapter
  anywhere: the frozen towers, our reading of "no adapters"), `text_pos`, `text_pos_neg`,
  `video_adapter`; the last row (both) is `low`;
- Table 7, the negative prompt's wording: `negative_less` ("less {label}"); "no" is `low`;
- Table 9, the adapter scale s: `scale_0.3`, `scale_0.7` (0.5 is `low`);
- ours: `pairwise_negatives` (our earlier negative-prompt loss), `mean_fusion` (fixed equal
  weights instead of the gate), `figure_layout` (no temporal transformer, one adapter per text
  block: the framework figure), `landmarks_on_face` (the landmarks as points over the face, as the
  figure draws them, instead of lines on black).
Every row trains with the model's preset otherwise (`--set` overrides apply to every row), and
is tested on the fold under both protocols. The `uar`/`war` columns are the `val` protocol's;
`paper_uar`/`paper_war` the `paper` protocol's (test-set selection, as the paper reports). The
paper's number of the same configuration (`published`: on this dataset, or DFEW's for the sample;
trainer/ablation_rows.py says which run each published number belongs to) is given beside ours,
or why there is none.

Written: runs/ablation-<name>-fold<k>.json (one record per row: name, table, uar, war, the
switches, trainable parameters, seconds) and the .md table beside it; <name> is `--name` or, as
`make train` names runs, `<dataset>-<model>` with a hash of any `--set` overrides. `--fold all`
runs each fold's ablation in turn and writes each row's mean ± std to runs/ablation-<name>-all.json. Resumable: a row
already in the JSON with the same configuration is skipped, and the JSON is rewritten after each
row. Each row trains in a process of its own (`python -m trainer.train`, every setting given);
its run folder is under runs/ablation-<name>-fold<k>/<row>/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.shards.files import AtomicFile
from trainer.ablation_rows import ROW_NAMES, Row, published, row_config, select_rows
from trainer.config import parse_overrides, resolve
from trainer.fineclip import FineCLIPER
from trainer.defaults import choose_model, dataset_name, default_shards
from trainer.models import model_preset
from trainer.run_dir import add_run_options, experiment_name


def ablation_path(runs_dir: Path, name: str, fold: int | str) -> Path:
    """runs/ablation-<name>-fold<k>.json (`-all` for the mean ± std over folds)."""
    return Path(runs_dir) / f"ablation-{name}-fold{fold}.json" if fold != "all" else \
        Path(runs_dir) / f"ablation-{name}-all.json"


def markdown_table(records: list[dict]) -> str:
    lines = ["| row | table | what | UAR | WAR | paper-protocol UAR / WAR | trainable | published UAR / WAR |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in records:
        known = r.get("published") or ({"uar": r["paper_dfew"][0], "war": r["paper_dfew"][1], "dataset": "dfew"}
                                        if r.get("paper_dfew") else {})   # a record written before `published`
        paper = (f"{known['uar']:.2f} / {known['war']:.2f} ({known['dataset']})" if known.get("uar") is not None
                 else f"— ({known['note']})" if known.get("note") else "—")
        protocol = (f"{r['paper_uar']:.1f} / {r['paper_war']:.1f}" if r.get("paper_uar") is not None else "—")
        lines.append(f"| `{r['name']}` | {r['table']} | {r['what']} | {r['uar']:.1f} | {r['war']:.1f} | {protocol} | "
                     f"{r['trainable_parameters'] / 1e6:.2f} M | {paper} |")
    return "\n".join(lines) + "\n"


def write_tables(path: Path, header: dict, records: list[dict]) -> None:
    order = {name: i for i, name in enumerate(ROW_NAMES)}
    records = sorted(records, key=lambda r: order.get(r["name"], len(order)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with AtomicFile(path) as f:
        f.write((json.dumps({**header, "rows": records}, indent=1) + "\n").encode())
    title = (f"# Ablation: {header['model']} on {header['dataset']}, fold {header['fold']}\n\n"
             f"`val`-protocol UAR / WAR in %, chance {100 / header['classes']:.1f}; written by "
             f"`python -m trainer.ablate` ({header['command']}).\n\n")
    path.with_suffix(".md").write_text(title + markdown_table(records))


def train_row(config, run_root: Path) -> dict:
    """One row's run: `python -m trainer.train` in a process of its own with the row's configuration
    (every field given), so rows cannot leak state into each other; its metrics.json."""
    command = [sys.executable, "-m", "trainer.train", "--dataset", config.dataset, "--model", config.model,
               "--fold", str(config.fold)]
    for key, value in config.to_dict().items():
        if key not in ("dataset", "model", "fold", "runs_dir"):
            command += ["--set", f"{key}={json.dumps(value)}"]
    command += ["--set", f"runs_dir={json.dumps(str(run_root))}", "--name", config.run_stem()]
    if subprocess.run(command).returncode != 0:
        raise RuntimeError(f"the run of {run_root.name} failed (its log: {run_root})")
    return json.loads((run_root / config.run_name() / "metrics.json").read_text())


def ablate(dataset: str, model: str, fold: int, rows: list[Row], overrides: dict[str, Any] | None = None,
           command: str = "", name: str | None = None) -> dict:
    """Train and test every row not yet in the ablation JSON; returns the whole table. `name` names the
    ablation (default: `<dataset>-<model>`, with a hash of `overrides` as `make train` names runs)."""
    from trainer.data import read_index

    overrides = dict(overrides or {})
    if model_preset(model).family is not FineCLIPER:
        raise ValueError(f"the ablation rows are FineCLIPER's: give a fineclip-* or tiny model, not {model!r}")
    probe = resolve(model, dataset, {**overrides, "fold": fold})
    path = ablation_path(Path(probe.runs_dir), experiment_name(probe, name), fold)
    classes = read_index(probe.shard_dir)["classes"]
    header = {"dataset": dataset, "model": model, "recipe": probe.recipe, "fold": fold, "classes": len(classes),
              "command": command or f"--dataset {dataset} --model {model} --fold {fold}"}
    records = json.loads(path.read_text())["rows"] if path.is_file() else []
    for row in rows:
        config = row_config(row, model, dataset, fold, overrides)
        recorded = json.loads(json.dumps(config.to_dict()))
        if any(r["name"] == row.name and r.get("config") == recorded for r in records):
            print(f"ablation {row.name}: done already ({path})")
            continue
        print(f"ablation {row.name} ({row.table}: {row.what}) ...", flush=True)
        started = time.time()
        result = train_row(config, path.with_suffix("") / row.name)
        protocols = result["protocols"]
        record = {"name": row.name, "table": row.table, "what": row.what, "model": config.model,
                  "uar": protocols["val"]["test"]["uar"], "war": protocols["val"]["test"]["war"],
                  "paper_uar": protocols.get("paper", {}).get("test", {}).get("uar"),
                  "paper_war": protocols.get("paper", {}).get("test", {}).get("war"),
                  "switches": ({**row.options, **row.settings} if row.family == "fineclip"
                               else {"family": "DFER-CLIP"}),
                  "trainable_parameters": result["trainable_parameters"], "epochs": result["epochs"],
                  "seconds": round(time.time() - started, 1), "published": published(row, config),
                  "config": recorded}
        records = [r for r in records if r["name"] != row.name] + [record]
        write_tables(path, header, records)   # after every row: an interrupted ablation keeps what it finished
    write_tables(path, header, records)
    print(path.with_suffix(".md").read_text())
    print(f"-> {path}, {path.with_suffix('.md')}")
    return {**header, "rows": records}


def ablate_folds(dataset: str, model: str, folds: list[int], rows: list[Row], overrides: dict[str, Any] | None = None,
                 command: str = "", name: str | None = None) -> dict:
    """Every fold's ablation (each resumable as one fold's), then each row's mean ± std over the folds."""
    tables = [ablate(dataset, model, k, rows, overrides, command, name) for k in folds]
    probe = resolve(model, dataset, {**(overrides or {}), "fold": folds[0]})
    path = ablation_path(Path(probe.runs_dir), experiment_name(probe, name), "all")
    summary = []
    for row in rows:
        records = [next(r for r in t["rows"] if r["name"] == row.name) for t in tables]
        entry = {"name": row.name, "table": row.table, "what": row.what}
        for metric in ("uar", "war"):
            values = np.array([r[metric] for r in records])
            entry[metric] = {"mean": float(values.mean()), "std": float(values.std()), "per_fold": values.tolist()}
        summary.append(entry)
    lines = [f"# Ablation: {model} on {dataset}, folds {', '.join(map(str, folds))}\n",
             "`val`-protocol UAR / WAR in %, mean ± std over the folds.\n",
             "| row | table | what | UAR | WAR |", "| --- | --- | --- | ---: | ---: |"]
    lines += [f"| `{e['name']}` | {e['table']} | {e['what']} | {e['uar']['mean']:.1f} ± {e['uar']['std']:.1f} | "
              f"{e['war']['mean']:.1f} ± {e['war']['std']:.1f} |" for e in summary]
    result = {"dataset": dataset, "model": model, "folds": folds, "rows": summary}
    with AtomicFile(path) as f:
        f.write((json.dumps(result, indent=1) + "\n").encode())
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"-> {path}, {path.with_suffix('.md')}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.ablate", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="sample", help="mafw | dfew | ferv39k | sample | path/to/manifest.csv")
    parser.add_argument("--fold", default="1", help="1..5, or all (each fold's ablation, then mean ± std per row)")
    parser.add_argument("--rows", default="", help=f"comma-separated rows (default: every row): {', '.join(ROW_NAMES)}")
    parser.add_argument("--shards", default="", help="dataset folder of shards (default shards/<dataset>)")
    add_run_options(parser)   # --model, --name, --set (applied to every row)
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set, args.shards)
    command = " ".join(argv if argv is not None else sys.argv[1:])
    try:
        model, _ = choose_model(args.model, args.dataset)
        dataset = dataset_name(args.dataset)
        if args.fold == "all":
            from trainer.data import dataset_folds, read_index

            folds = dataset_folds(read_index(overrides.get("shards") or default_shards(args.dataset)))
            ablate_folds(dataset, model, folds, select_rows(args.rows), overrides, command, args.name)
        else:
            ablate(dataset, model, int(args.fold), select_rows(args.rows), overrides, command, args.name)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
