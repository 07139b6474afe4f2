"""Probe for issue 21: two per-call costs quoted in docs/benchmarks.md, measured in one process.

    PYTHONPATH=. python bench/probes/hot_paths.py [--work-dir /tmp/dfer-bench]

1. dlib's HOG on a 720p frame of the hd set: the whole frame at 480 px against a region of 0.4 × the
   face's side around the face, at the same scale (DlibDetector's two searches);
2. one 224² JPEG of the sample's shards decoded by OpenCV and by simplejpeg (the same pixels).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np


def per_call_ms(function, items) -> float:
    function(items[0])
    start = time.perf_counter()
    for item in items:
        function(item)
    return 1e3 * (time.perf_counter() - start) / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/dfer-bench"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    from pipeline.face.dlib_models import DlibDetector
    from pipeline.inputs.decode import decode_clip
    from pipeline.shards.reader import read_shard

    detector = DlibDetector()
    frames = [f for p in sorted((args.work_dir / "sets" / "hd" / "videos").glob("*.mp4"))[:6]
              for f in decode_clip(p, planes=True).planes.y[::5]]
    faces = [(f, found[0][0]) for f in frames if (found := detector._search_whole(f)[0])]
    print(f"HOG, whole 720p frame: {per_call_ms(lambda f: detector._search_whole(f[0]), faces):.2f} ms; "
          f"region around the face: {per_call_ms(lambda f: detector._search_around(f[0], [f[1]], 0), faces):.2f} ms "
          f"({len(faces)} frames)")
    import simplejpeg

    shards = sorted((args.work_dir / "out" / "sample-w2").glob("fold1-*.tar"))[:2]
    jpegs = [c.frame_jpeg(i) for s in shards for c in read_shard(s) for i in range(0, c.num_frames, 4)]
    print(f"JPEG 224²: OpenCV {per_call_ms(lambda j: cv2.imdecode(np.frombuffer(j, np.uint8), 1), jpegs):.3f} ms, "
          f"simplejpeg {per_call_ms(lambda j: simplejpeg.decode_jpeg(j, colorspace='BGR'), jpegs):.3f} ms "
          f"({len(jpegs)} frames)")


if __name__ == "__main__":
    main()
