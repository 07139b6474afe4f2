"""Probe for issue 21: the sample's landmark NME and preprocessing time for several `detect_every`.

    PYTHONPATH=. python bench/probes/detect_every_nme.py 3 5 [--data data/sample] [--out /tmp/nme]

Preprocesses the sample (cpu profile, 2 workers) once per value into --out/de<k> and prints the
NME against the generator's ground truth (pipeline/sample/landmark_error.py) and the wall time
(docs/benchmarks.md, issue 21, item 3).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("every", type=int, nargs="+")
    parser.add_argument("--data", type=Path, default=Path("data/sample"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/nme"))
    args = parser.parse_args()
    from pipeline.preprocess import preprocess
    from pipeline.sample.landmark_error import landmark_nme

    for every in args.every:
        out = args.out / f"de{every}"
        start = time.perf_counter()
        preprocess("sample", args.data, out, profile="cpu", workers=2, overwrite=True, progress=False,
                   detect_every=every)
        result = landmark_nme(out, args.data)
        print(f"detect_every {every}: {time.perf_counter() - start:.1f} s, NME {result['nme_mean']:.5f} "
              f"(p95 {result['nme_p95']:.5f}, {result['frames']} frames)")


if __name__ == "__main__":
    main()
