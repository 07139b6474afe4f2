"""The pipeline on real faces: the real-footage set (tools/real_footage.py) through the `cpu` profile.

    python bench/real_footage.py [--data data/real] [--out bench/results/real_footage.json]
        [--work-dir /tmp/dfer-bench] [--no-cnn]

Three passes, each figure against the set's ground truth (pipeline/real/truth.py):

1. **The pipeline** (`preprocess`, as `make preprocess` runs it) over every clip: status, frames
   decoded / with a face visible / stored / stored face frames, faces seen, the landmark NME on
   the annotated photographs (outer eye corners, over face frames), the description and its events.
2. **Every decoded frame** (the face stage without trimming): `landmarks_conf` against whether a
   face is visible — its ROC AUC, the lowest value on a face frame and the highest on a faceless
   one, and what the 0.5 threshold gets wrong; and the share of confirmed face frames per clip,
   for the `few_face_frames` threshold.
3. **The detector on the searched frames** (every 5th and the last): how often the `cpu` profile's
   HOG finds a face where one is visible (recall) and finds one where none is (false detections),
   and, unless `--no-cnn`, what dlib's CNN detector (`--detector dlib-cnn`) adds where HOG finds
   nothing: faces found, false ones, seconds per frame.

Writes one JSON (default bench/results/real_footage.json); `tools/real_footage_report.py` turns it
into docs/real-footage.md.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import DEFAULT_WORK, RESULTS, ROOT, log, machine_info, write_json  # noqa: E402


def manifest_rows(data: Path) -> list[dict]:
    lines = [line for line in (data / "manifest.csv").read_text().splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines))


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return done.stdout.strip() + ("+changes" if dirty else "")


# ---------------------------------------------------------------------------------- 1. pipeline
def pipeline_pass(data: Path, out: Path) -> tuple[dict, float]:
    import json

    from pipeline.inputs.decode import uniform_indices
    from pipeline.preprocess import preprocess
    from pipeline.real.truth import load_truth, match_frames, outer_corner_nme
    from pipeline.shards.layout import source_to_crop
    from pipeline.run.stages import FaceConfig
    from pipeline.shards.reader import ShardReader

    began = time.perf_counter()
    preprocess(str(data / "manifest.csv"), data, out, profile="cpu", overwrite=True, progress=False)
    seconds = time.perf_counter() - began
    status = {r["clip_id"]: r for p in sorted(out.glob("*.status.jsonl"))
              for r in map(json.loads, p.read_text().splitlines())}
    samples = {clip.meta["clip_id"]: clip for clip in ShardReader(out)}
    clips = {}
    for row in manifest_rows(data):
        clip_id = row["clip_id"]
        truth = load_truth(data, clip_id)
        decoded = uniform_indices(len(truth.timestamps), FaceConfig.max_frames)   # the frames the decoder keeps
        entry = {"label": row["label"], "status": status[clip_id]["status"], "reason": status[clip_id]["reason"],
                 "frames_in_source": len(truth.timestamps), "frames_visible": int(truth.face_visible[decoded].sum()),
                 "people": truth.people}
        clip = samples.get(clip_id)
        if clip is not None:
            index = match_frames(truth, clip.timestamps)
            visible = truth.face_visible[index]
            quality = clip.meta["quality"]
            record = clip.description_record
            entry.update({
                "frames_decoded": quality["frames_decoded"], "frames_stored": clip.num_frames,
                "face_frames_stored": int(clip.face_detected.sum()), "visible_stored": int(visible.sum()),
                "faceless_stored_with_confidence": int((clip.landmarks_conf[~visible] > 0).sum()),
                "trimmed": quality["trimmed"], "faces_seen": quality["faces_seen"], "shots": quality["shots"],
                "description": clip.description,
                "events": [f"{e['action']} ({e['degree']})" for e in record.get("events", [])],
                "blinks": len(record.get("blinks", [])),
            })
            if truth.annotated:
                errors = outer_corner_nme(clip.landmarks, source_to_crop(truth.landmarks[index], clip.boxes,
                                                                          clip.meta["crop_size"]))
                entry["nme"] = round(float(errors[clip.face_detected].mean()), 4)
        clips[clip_id] = entry
    return clips, seconds


# ------------------------------------------------------------------------- 2. every decoded frame
def frame_pass(data: Path) -> dict:
    """landmarks_conf on every decoded frame (trimming and the face-share check off), and the HOG
    margin of the re-check before the shot rule."""
    from pipeline.inputs.decode import decode_clip
    from pipeline.real.truth import load_truth, match_frames, roc_auc
    from pipeline.run.stages import FaceConfig, FaceStage, NoFaceError

    config = FaceConfig(dataset="real", manifest="", data_root=str(data), work_dir=str(data), trim_faceless=False,
                        min_face_share=0.0)
    stage = FaceStage(config)
    stage.setup()
    detector = stage.detector
    scores, raw_margins, faces, shares = [], [], [], {}
    for row in manifest_rows(data):
        truth = load_truth(data, row["clip_id"])
        clip = decode_clip(data / row["path"], max_frames=config.max_frames, planes=True)
        try:
            found = stage.detect_faces(clip, data / row["path"])
            conf = found.confidence
            raw = detector.confirm(found.crops, found.face_in_crop)
            with np.errstate(divide="ignore"):
                margin = np.where(raw > 0, detector.confirm_margin + np.log(raw / (1 - raw + 1e-12)) / 2, -np.inf)
        except NoFaceError:
            conf = np.zeros(len(clip.timestamps), np.float32)
            margin = np.full(len(clip.timestamps), -np.inf)
        visible = truth.face_visible[match_frames(truth, clip.timestamps)]
        scores.append(conf)
        raw_margins.append(margin)
        faces.append(visible)
        shares[row["clip_id"]] = {"confirmed": round(float((conf > 0).mean()), 3),
                                  "visible": round(float(visible.mean()), 3)}
    conf, margin, visible = np.concatenate(scores), np.concatenate(raw_margins), np.concatenate(faces)
    return {
        "what": "landmarks_conf on every decoded frame of the real set (nothing trimmed) against whether a face "
                "is visible; and the HOG margin of the re-check alone (no shot rule)",
        "roc_auc": round(roc_auc(conf, visible), 4), "face_frames": int(visible.sum()),
        "faceless_frames": int((~visible).sum()),
        "lowest_on_face": round(float(conf[visible].min()), 4),
        "highest_on_faceless": round(float(conf[~visible].max()), 4),
        "threshold": 0.5,
        "face_frames_below_threshold": int((conf[visible] < 0.5).sum()),
        "faceless_frames_at_or_above_threshold": int((conf[~visible] >= 0.5).sum()),
        "recheck_margin": {"lowest_on_face": round(float(margin[visible].min()), 3),
                           "highest_on_faceless": round(float(margin[~visible].max()), 3),
                           "roc_auc": round(roc_auc(np.maximum(margin, -99), visible), 4),
                           "margin_threshold": detector.confirm_margin},
        "share_per_clip": shares,
    }


def random_boxes_pass(data: Path, boxes_per_frame: int = 6, seed: int = 0) -> dict:
    """The re-check's HOG margin for random boxes on the set's faceless frames (every 3rd): how often a
    box the tracker left on faceless footage would pass for a face at each margin."""
    from pipeline.face.dlib_models import DlibDetector
    from pipeline.face.track import crop_affines, crop_squares, cut_crops, map_boxes
    from pipeline.inputs.decode import decode_clip
    from pipeline.real.truth import load_truth, match_frames

    detector, rng, margins = DlibDetector(), np.random.default_rng(seed), []
    for row in manifest_rows(data):
        truth = load_truth(data, row["clip_id"])
        if truth.face_visible.all():
            continue
        clip = decode_clip(data / row["path"])
        faceless = np.flatnonzero(~truth.face_visible[match_frames(truth, clip.timestamps)])[::3]
        height, width = clip.frames.shape[1:3]
        for t in faceless:
            for _ in range(boxes_per_frame):
                side = rng.uniform(50, 0.7 * min(height, width))
                x, y = rng.uniform(0, width - side), rng.uniform(0, height - side)
                box = np.array([[x, y, x + side, y + side]])
                affine = crop_affines(crop_squares(box, 1.5, 0.08), 224)
                crop = cut_crops(clip.frames[t:t + 1], affine, 224)
                raw = float(detector.confirm(crop, map_boxes(box, affine))[0])
                margins.append(detector.confirm_margin + np.log(raw / (1 - raw)) / 2 if raw > 0 else -np.inf)
    margins = np.array(margins)
    return {"what": "HOG margin of the re-check for random boxes (side 50 px to 0.7 of the frame's short side) on "
                    "every 3rd faceless frame of the set", "boxes": len(margins),
            "highest": round(float(margins.max()), 3),
            "share_above": {str(m): round(float((margins > m).mean()), 4) for m in (-1.0, -0.8, -0.7, -0.6, -0.5)}}


def shots_pass(data: Path) -> dict:
    """The thumbnail change (pipeline/face/shots.py) at the cuts of the cut clips, where the face appears
    or goes, against the largest change between two frames of one shot elsewhere in the set."""
    from pipeline.face.shots import CUT_DIFFERENCE, thumbnails
    from pipeline.inputs.decode import decode_clip
    from pipeline.real.truth import load_truth, match_frames

    at_cuts, within = [], []
    for row in manifest_rows(data):
        truth = load_truth(data, row["clip_id"])
        clip = decode_clip(data / row["path"])
        change = np.abs(np.diff(thumbnails(clip.frames), axis=0)).mean(axis=(1, 2))
        visible = truth.face_visible[match_frames(truth, clip.timestamps)]
        cuts = np.flatnonzero(np.diff(visible.astype(int)))       # change[i]: frame i -> i + 1
        near = np.zeros(len(change), bool)
        for i in cuts:
            near[max(0, i - 1):i + 2] = True
            at_cuts.append(float(change[max(0, i - 1):i + 2].max()))
        if row["clip_id"] != "faceless_title" and not row["clip_id"].startswith("cut"):
            within.append(float(change.max()))
    return {"what": "mean absolute change of 32×18 luma thumbnails between consecutive frames (grey levels)",
            "cut_difference": CUT_DIFFERENCE, "at_cuts_min": round(min(at_cuts), 1),
            "within_shot_max": round(max(within), 1),
            "note": "within_shot_max over the clips without a cut; at_cuts over the cut clips' face/no-face cuts"}


# ------------------------------------------------------------------------------ 3. the detector
def detector_pass(data: Path, cnn: bool) -> dict:
    from pipeline.face.dlib_models import DlibDetector
    from pipeline.inputs.decode import decode_clip
    from pipeline.real.truth import load_truth, match_frames
    from pipeline.run.stages import FaceConfig

    detector = DlibDetector()
    every = FaceConfig.detect_every
    hog = {"visible": 0, "found": 0, "faceless": 0, "false": 0, "seconds": 0.0, "frames": 0}
    fallback = {"frames": 0, "visible": 0, "found": 0, "faceless": 0, "false": 0, "seconds": 0.0}
    per_clip = {}
    for row in manifest_rows(data):
        clip = decode_clip(data / row["path"], planes=True)
        frames = clip.planes.y if clip.planes is not None else clip.frames
        truth = load_truth(data, row["clip_id"])
        visible = truth.face_visible[match_frames(truth, clip.timestamps)]
        probe = list(range(0, len(frames), every))
        if probe[-1] != len(frames) - 1:
            probe.append(len(frames) - 1)
        began = time.perf_counter()
        found = detector.detect([frames[t] for t in probe])
        hog["seconds"] += time.perf_counter() - began
        hog["frames"] += len(probe)
        seen = np.array([bool(f) for f in found])
        shown = visible[probe]
        hog["visible"] += int(shown.sum())
        hog["found"] += int((seen & shown).sum())
        hog["faceless"] += int((~shown).sum())
        hog["false"] += int((seen & ~shown).sum())
        per_clip[row["clip_id"]] = {"searched": len(probe), "visible": int(shown.sum()),
                                    "found": int((seen & shown).sum()), "false": int((seen & ~shown).sum())}
        if cnn:
            lost = [i for i, s in enumerate(seen) if not s]
            began = time.perf_counter()
            extra = [bool(detector._search_cnn(frames[probe[i]])) for i in lost]
            fallback["seconds"] += time.perf_counter() - began
            fallback["frames"] += len(lost)
            for i, hit in zip(lost, extra):
                fallback["visible" if shown[i] else "faceless"] += 1
                fallback["found" if shown[i] else "false"] += int(hit)
            per_clip[row["clip_id"]]["cnn_found"] = sum(hit for i, hit in zip(lost, extra) if shown[i])
            per_clip[row["clip_id"]]["cnn_false"] = sum(hit for i, hit in zip(lost, extra) if not shown[i])
    result = {
        "what": "the cpu profile's detector (dlib HOG, region search) on the searched frames (every "
                f"{every}th and the last) of every real clip",
        "hog": {"searched_with_face": hog["visible"], "found": hog["found"],
                "recall": round(hog["found"] / max(hog["visible"], 1), 4),
                "searched_without_face": hog["faceless"], "false_detections": hog["false"],
                "ms_per_searched_frame": round(1000 * hog["seconds"] / max(hog["frames"], 1), 1)},
        "per_clip": per_clip,
    }
    if cnn:
        result["cnn_where_hog_finds_nothing"] = {
            "frames": fallback["frames"], "with_face": fallback["visible"], "found": fallback["found"],
            "without_face": fallback["faceless"], "false_detections": fallback["false"],
            "seconds_per_frame": round(fallback["seconds"] / max(fallback["frames"], 1), 3),
            "recall_with_fallback": round((hog["found"] + fallback["found"]) / max(hog["visible"], 1), 4),
            "extra_seconds_per_searched_frame": round(fallback["seconds"] / max(hog["frames"], 1), 3),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "real")
    parser.add_argument("--out", type=Path, default=RESULTS / "real_footage.json")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--no-cnn", action="store_true", help="skip measuring dlib's CNN detector (slow)")
    args = parser.parse_args()
    if not (args.data / "manifest.csv").is_file():
        sys.exit(f"{args.data}/manifest.csv is missing: run `make real-footage` first")
    report = {"benchmark": "real_footage", "machine": machine_info(), "commit": commit(),
              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    log("real footage: the pipeline over every clip")
    shards = args.work_dir / "out" / "real"
    report["clips"], report["pipeline_seconds"] = pipeline_pass(args.data, shards)
    report["shards"] = str(shards)
    log("real footage: landmark confidence on every decoded frame")
    report["confidence"] = frame_pass(args.data)
    log("real footage: shot cuts")
    report["shots"] = shots_pass(args.data)
    log("real footage: random boxes on faceless frames")
    report["random_boxes"] = random_boxes_pass(args.data)
    log("real footage: the detector on the searched frames")
    report["detector"] = detector_pass(args.data, cnn=not args.no_cnn)
    photos = [c["nme"] for c in report["clips"].values() if "nme" in c]
    report["nme"] = {"what": "landmark NME against the hand annotations (outer eye corners), mean over face frames",
                     "per_photo": {k: c["nme"] for k, c in report["clips"].items() if "nme" in c},
                     "mean": round(float(np.mean(photos)), 4) if photos else None}
    write_json(args.out, report)
    log(f"real footage: ROC AUC {report['confidence']['roc_auc']}, HOG recall {report['detector']['hog']['recall']}, "
        f"NME {report['nme']['per_photo']} -> {args.out}")


if __name__ == "__main__":
    main()
