"""Probe: where the face stage's per-frame confirmation (`DlibDetector.confirm`) spends its time, on
one set of clips, in this process (no Ray).

    PYTHONPATH=. python bench/probes/confirm_cost.py --manifest /tmp/dfer-bench/sets/hd/manifest.csv [--clips 20]

Each clip is decoded and its face found, tracked and cropped as the `cpu` profile does it
(`FaceStage.detect_faces`); then, on the clip's crops, `confirm` is timed whole and in its parts:
the grey region scaled to `confirm_size` (OpenCV), dlib's HOG run on it, and the rest (Python:
the box arithmetic, the IoU filter, the logistic). The landmark model on the same crops is timed
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

    import cv2

    from pipeline.inputs.decode import decode_clip
    from pipeline.run.stages import FaceConfig, FaceStage

    root = args.manifest.resolve().parent
    stage = FaceStage(FaceConfig(dataset="probe", manifest=str(args.manifest.resolve()), data_root=str(root),
                                 work_dir="/tmp"))
    stage.setup()
    det, lm = stage.detector, stage.landmarker
    import csv

    with open(args.manifest) as f:
        rows = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]
    times = {"confirm": 0.0, "grey+resize": 0.0, "hog": 0.0, "landmarks": 0.0}
    frames = 0
    for row in rows[:args.clips]:
        path = root / row["path"]
        clip = decode_clip(path, max_frames=256, planes=True, threads=1)
        faces = stage.detect_faces(clip, path)
        crops, boxes = faces.crops, faces.face_in_crop
        frames += len(crops)
        began = time.perf_counter()
        det.confirm(crops, boxes)
        times["confirm"] += time.perf_counter() - began
        for crop, box in zip(crops, boxes):
            side = max(box[2] - box[0], box[3] - box[1])
            grow, scale = side / 4, det.confirm_size / side
            x0, y0 = max(0, int(box[0] - grow)), max(0, int(box[1] - grow))
            x1, y1 = min(crop.shape[1], int(np.ceil(box[2] + grow))), min(crop.shape[0], int(np.ceil(box[3] + grow)))
            t0 = time.perf_counter()
            grey = cv2.cvtColor(crop[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
            small = cv2.resize(grey, None, fx=scale, fy=scale,
                               interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            t1 = time.perf_counter()
            det.models.detector.run(np.ascontiguousarray(small), 0, det.confirm_margin - 2)
            t2 = time.perf_counter()
            times["grey+resize"] += t1 - t0
            times["hog"] += t2 - t1
        began = time.perf_counter()
        lm.predict(crops, boxes)
        times["landmarks"] += time.perf_counter() - began
    print(f"{frames} frames over {min(len(rows), args.clips)} clips; ms per frame:")
    for k, v in times.items():
        print(f"  {k:12s} {1000 * v / frames:.3f}")
    print(f"  {'rest':12s} {1000 * (times['confirm'] - times['grey+resize'] - times['hog']) / frames:.3f}"
          "  (confirm less grey+resize and hog)")


if __name__ == "__main__":
    main()
