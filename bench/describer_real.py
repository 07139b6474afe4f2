"""The geometric describer on real faces: the events it reports where the face holds still.

    python bench/describer_real.py [--data data/real] [--work-dir /tmp/dfer-bench/describer-real]
        [--out bench/results/describer_real.json]

Every clip of the real-footage set (`make real-footage`, data/real/manifest.csv) goes through
the `cpu` face stage in this process (landmarks cached as <clip>.npz in the work folder and
reused); the frames where the set's truth shows no face (`face_visible`) are given confidence 0,
as the face stage's confirmation gives them, so that only the describer is measured. Each clip
is then described three times: as the describer is; without its confidence rule (a movement counts
only frames the detector confirmed with MEASURE_CONFIDENCE); and without any of issue 30's three
rules (also: a movement needs measured frames; a facial movement that follows an out-of-plane head
movement is the head's). Per clip: the facial actions and head movements named, with their peak over the
threshold. Where the truth is known the count should be 0: the still photographs moved by a
camera (`photo`), and the head movements of the faceless clips. The sample dataset's figures
(descriptions against its truth) are bench/sample_accuracy.py's, which this change must keep.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import DEFAULT_WORK, RESULTS, ROOT, log, machine_info, write_json  # noqa: E402


def manifest_rows(data: Path) -> list[dict]:
    lines = [line for line in (data / "manifest.csv").read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


def landmarks(data: Path, rows: list[dict], work: Path) -> dict[str, dict]:
    """clip_id -> the face stage's landmarks, confidence and timestamps (cached in `work`)."""
    from pipeline.run.stages import FaceConfig, FaceStage, NoFaceError

    work.mkdir(parents=True, exist_ok=True)
    stage, out = None, {}
    for row in rows:
        cached = work / f"{row['clip_id']}.npz"
        if not cached.is_file():
            if stage is None:
                stage = FaceStage(FaceConfig(dataset="real", manifest="", data_root=str(data), work_dir=str(work)))
                stage.setup()
            meta = {"dataset": "real", "clip_id": row["clip_id"], "label": row["label"], "partition": row["partition"]}
            try:
                s = stage.sample_from_file(data / row["path"], row["clip_id"], meta, row["path"])
            except NoFaceError:
                log(f"{row['clip_id']}: no face found")
                continue
            np.savez(cached, landmarks=s.landmarks, conf=s.landmarks_conf, timestamps=s.timestamps)
            log(f"{row['clip_id']}: {s.num_frames} frames")
        arrays = np.load(cached)
        out[row["clip_id"]] = {k: arrays[k] for k in ("landmarks", "conf", "timestamps")}
    return out


def describe(points, conf, timestamps, rules: bool, gate: bool) -> list[dict]:
    """The clip's movements (blinks aside). With `rules`, through the describer itself, its confidence
    rule on or off (`gate`); without, issue 30's rules undone by hand."""
    import pipeline.describers.geometric as geometric

    if rules:
        describer = geometric.GeometricDescriber(measure_confidence=geometric.MEASURE_CONFIDENCE if gate else 0)
        found = describer.describe_tracks(points, timestamps, conf, detector_confidence=True).record["events"]
    else:
        saved, geometric.POSE_EXPLAINS = geometric.POSE_EXPLAINS, np.inf
        try:
            signals, usable = geometric._signals_and_usable(points, timestamps, conf >= geometric.MIN_CONFIDENCE)
            found = [vars(e) for e in geometric.events(signals, list(geometric.SIGNAL_NAMES), timestamps)
                     if e.action != "blink"] if usable.any() else []
        finally:
            geometric.POSE_EXPLAINS = saved
    return [{"action": e["action"], "signal": e["signal"], "onset_s": e["onset_s"], "ending": e["ending"],
             "peak_over_threshold": round(e["peak"] / geometric.THRESHOLDS[e["signal"]][0], 2)} for e in found]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "real")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK / "describer-real")
    parser.add_argument("--out", type=Path, default=RESULTS / "describer_real.json")
    args = parser.parse_args()
    if not (args.data / "manifest.csv").is_file():
        raise SystemExit(f"{args.data}/manifest.csv: no real-footage set there (make real-footage)")
    machine = machine_info()
    rows = manifest_rows(args.data)
    tracks = landmarks(args.data, rows, args.work_dir)
    clips, totals = {}, {}
    for row in rows:
        if row["clip_id"] not in tracks:
            continue
        t = tracks[row["clip_id"]]
        truth = np.load(args.data / "truth" / f"{row['clip_id']}.npz")
        at = np.clip(np.searchsorted(truth["timestamps"], t["timestamps"] - 1e-4), 0, len(truth["timestamps"]) - 1)
        conf = np.where(truth["face_visible"][at], t["conf"], 0.0)
        entry = {"label": row["label"], "frames": int(len(conf)), "face_frames": int((conf > 0).sum())}
        for name, rules, gate in (("now", True, True), ("without_confidence_rule", True, False),
                                  ("without_issue30_rules", False, False)):
            found = describe(t["landmarks"].astype(np.float64), conf, t["timestamps"], rules, gate)
            face = [e for e in found if not e["signal"].startswith("head_")]
            entry[name] = {"facial_actions": len(face), "head_movements": len(found) - len(face), "events": found}
            group = totals.setdefault(row["label"], {}).setdefault(name, {"facial_actions": 0, "head_movements": 0})
            group["facial_actions"] += len(face)
            group["head_movements"] += len(found) - len(face)
        clips[row["clip_id"]] = entry
        before = [entry[k] for k in ("without_confidence_rule", "without_issue30_rules")]
        log(f"{row['clip_id']:20s} facial actions {entry['now']['facial_actions']} (before "
            f"{'/'.join(str(b['facial_actions']) for b in before)}), head movements {entry['now']['head_movements']} "
            f"(before {'/'.join(str(b['head_movements']) for b in before)})")
    write_json(args.out, {"benchmark": "describer_real", "machine": machine, "data": str(args.data),
                          "per_label": totals, "clips": clips})
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
