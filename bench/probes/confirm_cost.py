"""Probe: where the face stage's per-frame confirmation (`DlibDetector.confirm`) spends its time, on
one set of clips, in this process (no Ray).

    PYTHONPATH=. python bench/probes/confirm_cost.py --manifest /tmp/dfer-bench/sets/hd/manifest.csv [--clips 20]

Each clip is decoded and its face found, tracked and cropped as the `cpu` profile does it
(`FaceStage.detect_faces`); then, on the clip's crops, `confirm` is timed whole and in its parts:
the grey region scaled to `confirm_size` (`DlibDetector.confirm_region`), dlib's HOG run on it, and
the rest (Python: the IoU filter, the logistic). The landmark model on the same crops is timed
beside it for scale. Prints milliseconds per frame.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=20)
    args = parser.parse_args()

    from pipeline.inputs.decode import decode_clip
    from pipeline.inputs.manifest import load_manifest
    from pipeline.run.stages import FaceConfig, FaceStage

    root = args.manifest.resolve().parent
    stage = FaceStage(FaceConfig(dataset="probe", manifest=str(args.manifest.resolve()), data_root=str(root),
                                 work_dir="/tmp"))
    stage.setup()
    det, lm = stage.detector, stage.landmarker
    manifest = load_manifest(str(args.manifest), root)
    rows = manifest.rows[:args.clips]
    times = {"confirm": 0.0, "grey+resize": 0.0, "hog": 0.0, "landmarks": 0.0}
    frames = 0
    for row in rows:
        path = manifest.locate(row, root)
        clip = decode_clip(path, max_frames=256, planes=True, threads=1)
        faces = stage.detect_faces(clip, path)
        crops, boxes = faces.crops, faces.face_in_crop
        frames += len(crops)
        began = time.perf_counter()
        det.confirm(crops, boxes)
        times["confirm"] += time.perf_counter() - began
        for crop, box in zip(crops, boxes):
            t0 = time.perf_counter()
            region = det.confirm_region(crop, box)
            t1 = time.perf_counter()
            if region is None:
                continue
            small = region[0]
            det.models.detector.run(np.ascontiguousarray(small), 0, det.confirm_margin - 2)
            t2 = time.perf_counter()
            times["grey+resize"] += t1 - t0
            times["hog"] += t2 - t1
        began = time.perf_counter()
        lm.predict(crops, boxes)
        times["landmarks"] += time.perf_counter() - began
    print(f"{frames} frames over {len(rows)} clips; ms per frame:")
    for k, v in times.items():
        print(f"  {k:12s} {1000 * v / frames:.3f}")
    print(f"  {'rest':12s} {1000 * (times['confirm'] - times['grey+resize'] - times['hog']) / frames:.3f}"
          "  (confirm less grey+resize and hog)")


if __name__ == "__main__":
    main()
