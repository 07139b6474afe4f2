"""Probe for issue 30: the landmark NME on the real-footage set's annotated photographs, with the face
stage of whichever checkout is first on PYTHONPATH — 302cc4d, before face confirmation, for the
figures docs/real-footage.md compares with.

    git worktree add /tmp/dfer-302cc4d 302cc4d
    PYTHONPATH=/tmp/dfer-302cc4d python bench/probes/real_nme_before.py --data data/real \\
        --out bench/results/real_footage_nme_302cc4d.json

Uses only what every version of the face stage has (`FaceStage.sample_from_file`) and computes the
NME here (outer eye corners, over every stored frame, matched to the truth by timestamp), so it runs
against checkouts that predate pipeline/real/.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
from pathlib import Path

import numpy as np

PHOTOS = ("photo_breakingbad", "photo_einstein", "photo_takeo", "photo_lenna")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/real"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import pipeline
    from pipeline.run.stages import FaceConfig, FaceStage

    checkout = Path(pipeline.__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    stage = FaceStage(FaceConfig(dataset="real", manifest="", data_root=str(args.data), work_dir=str(args.data)))
    stage.setup()
    rows = {r["clip_id"]: r for r in csv.DictReader(
        line for line in (args.data / "manifest.csv").read_text().splitlines() if not line.startswith("#"))}
    per_photo = {}
    for clip_id in PHOTOS:
        row = rows[clip_id]
        sample = stage.sample_from_file(args.data / row["path"], clip_id, {"dataset": "real", "clip_id": clip_id,
                                        "label": row["label"], "partition": row["partition"]}, row["path"])
        with np.load(args.data / "truth" / f"{clip_id}.npz") as truth:
            index = np.abs(truth["timestamps"][None, :] - sample.timestamps[:, None]).argmin(axis=1)
            points = truth["landmarks"][index]
        x0, y0, x1, y1 = sample.boxes.astype(np.float64).T
        scale = (224 / (x1 - x0))[:, None, None]
        in_crop = (points - np.stack([x0, y0], 1)[:, None, :]) * scale
        errors = np.linalg.norm(sample.landmarks - in_crop, axis=2).mean(1) / \
            np.linalg.norm(in_crop[:, 45] - in_crop[:, 36], axis=1)
        per_photo[clip_id] = round(float(errors.mean()), 4)
    result = {"what": "landmark NME (outer eye corners) on the real set's annotated photographs, mean over stored "
                      "frames, with the face stage of the checkout named", "commit": commit, "per_photo": per_photo,
              "mean": round(float(np.mean(list(per_photo.values()))), 4)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
