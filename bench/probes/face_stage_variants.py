"""Probe for issue 30, item 8: each of issue 21's speed changes toggled, and what it does to the descriptions.

    PYTHONPATH=. python bench/probes/face_stage_variants.py run NAME [--detect-every 5] [--full-search-every 8]
        [--planes 1] [--data data/sample] [--work-dir /tmp/dfer-bench/variants]
    PYTHONPATH=. python bench/probes/face_stage_variants.py score NAME [NAME ...] [--reference head]
        [--out bench/results/face_stage_variants.json]

`run` puts every sample clip through the `cpu` face stage in this process (no Ray), with the
detector cadence (`FaceConfig.detect_every`), the region search (`DlibDetector.full_search_every`:
1 searches every frame whole) and the 4:2:0 planes path (`takes_luma`: 0 decodes RGB frames)
set as given, describes each clip with the geometric describer, and keeps landmarks, boxes,
confidence and description per clip in NAME.pkl under the work folder. Run with PYTHONPATH at
an older checkout (e.g. 83b06b8, which has none of the switches) it records that commit's face
stage. `score` compares the variants against the generator's truth: landmark NME, the
frame-to-frame change of the landmark error ("jitter"), the F1 of the facial actions each
description names against those the describer finds on the true landmarks, and how many
descriptions are word for word those of the reference variant (docs/training.md, issue 30).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import sys
from pathlib import Path

import numpy as np


def run(args: argparse.Namespace) -> None:
    from pipeline.describers.geometric import GeometricDescriber
    from pipeline.run.stages import FaceConfig, FaceStage

    data = args.data.resolve()
    kw = {} if args.detect_every is None else {"detect_every": args.detect_every}
    stage = FaceStage(FaceConfig(dataset="sample", manifest=str(data / "manifest.csv"), data_root=str(data),
                                 work_dir=str(args.work_dir), **kw))
    stage.setup()
    if args.full_search_every is not None:
        stage.detector.full_search_every = args.full_search_every
    if args.planes is not None:
        type(stage.detector).takes_luma = bool(args.planes)
    describer = GeometricDescriber()
    out = {}
    for row in stage.manifest.rows:
        try:
            sample = stage.make_sample(dataclasses.asdict(row))
        except Exception as err:  # noqa: BLE001 — the broken clips fail as in the pipeline
            print(f"{row.clip_id}: {type(err).__name__}", flush=True)
            continue
        d = describer.describe_tracks(sample.landmarks, sample.timestamps, sample.landmarks_conf)
        out[row.clip_id] = {"landmarks": sample.landmarks, "conf": sample.landmarks_conf, "boxes": sample.boxes,
                            "ts": sample.timestamps, "detected": sample.face_detected, "text": d.text,
                            "record": d.record, "partition": row.partition, "label": row.label}
    args.work_dir.mkdir(parents=True, exist_ok=True)
    with open(args.work_dir / f"{args.name[0]}.pkl", "wb") as f:
        pickle.dump(out, f)
    print(f"{args.name[0]}: {len(out)} clips", flush=True)


def _face_actions(record: dict) -> set[str]:
    return {e["action"] for e in record["events"] if not e["signal"].startswith("head_")}


def score(args: argparse.Namespace) -> None:
    from pipeline.describers.geometric import GeometricDescriber
    from pipeline.sample.landmark_error import frame_errors
    from pipeline.shards.layout import interocular_distance, source_to_crop

    describer = GeometricDescriber()
    truth = {}
    load = lambda name: pickle.load(open(args.work_dir / f"{name}.pkl", "rb"))  # noqa: E731
    reference = load(args.reference)
    report = {"what": __doc__.split("\n")[0], "reference": args.reference, "variants": {}}
    for name in args.name:
        runs = load(name)
        nme, jitter, tp, fp, fn, same, same_actions = [], [], 0, 0, 0, 0, 0
        for clip_id, r in runs.items():
            if clip_id not in truth:
                t = np.load(args.data / "truth" / f"{clip_id}.npz")
                truth[clip_id] = (t["landmarks"], _face_actions(describer.describe_tracks(t["landmarks"],
                                                                                          t["timestamps"]).record))
            points, wanted = truth[clip_id]
            g = source_to_crop(points, r["boxes"], 224)
            nme.append(frame_errors(r["landmarks"], g))
            jitter.append(np.linalg.norm(np.diff(r["landmarks"] - g, axis=0), axis=2).mean(1)
                          / interocular_distance(g)[1:])
            got = _face_actions(r["record"])
            tp, fp, fn = tp + len(wanted & got), fp + len(got - wanted), fn + len(wanted - got)
            if clip_id in reference:
                same += reference[clip_id]["text"] == r["text"]
                same_actions += _face_actions(reference[clip_id]["record"]) == got
        report["variants"][name] = {
            "clips": len(runs), "nme_mean": round(float(np.concatenate(nme).mean()), 5),
            "jitter_mean": round(float(np.concatenate(jitter).mean()), 5),
            "f1": round(2 * tp / max(2 * tp + fp + fn, 1), 4), "false_positives": fp, "false_negatives": fn,
            f"descriptions_as_{args.reference}": same, f"facial_actions_as_{args.reference}": same_actions}
        print(name, report["variants"][name], flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("run", "score"))
    parser.add_argument("name", nargs="+")
    parser.add_argument("--data", type=Path, default=Path("data/sample"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/dfer-bench/variants"))
    parser.add_argument("--detect-every", type=int)
    parser.add_argument("--full-search-every", type=int)
    parser.add_argument("--planes", type=int, choices=(0, 1))
    parser.add_argument("--reference", default="head")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    run(args) if args.step == "run" else score(args)


if __name__ == "__main__":
    sys.exit(main())
