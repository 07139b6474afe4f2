"""Probe for issue 33: the pipeline's orchestration at a dataset's full size, without the face work.

    PYTHONPATH=. python bench/probes/orchestration.py ferv39k --data-root data/standin-ferv39k --out DIR

Runs the real `pipeline.preprocess.preprocess` over the dataset's whole built-in manifest (38,935
rows for FERV39k, 609 shards), the cpu profile, Ray, every shard committed and the index written,
but with a face stage that reads no clip: each row is recorded as failed (`probe_skipped`) at once,
and each shard's tar holds no sample. What is left is everything whose cost grows with the number
of clips and shards rather than frames: the driver's manifest and plan, Ray Data's scheduling of
one task per shard, the attempt ledger, the per-shard commit (status, stats, checksum), the
progress report, the index. `bench/scale.py` runs it in a process of its own and reads the
driver's memory, the run's time and its log lines; then `python -m pipeline.verify` checks the
folder (all 38,935 rows, each exactly once).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.inputs.manifest import ClipPathError  # noqa: E402
from pipeline.run.stages import FaceStage  # noqa: E402


class SkippingFaceStage(FaceStage):
    """The face stage with no face work: every clip a recorded failure, every tar empty (and no models)."""

    def setup(self) -> None:
        self.manifest = None

    def make_sample(self, row: dict):
        raise ClipPathError("probe_skipped", f"{row['clip_id']}: not read (orchestration probe)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="a built-in dataset (its whole manifest) or a manifest file")
    parser.add_argument("--data-root", type=Path, required=True, help="any existing folder (nothing is read)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    from pipeline.preprocess import preprocess

    index = preprocess(args.dataset, args.data_root, args.out, profile="cpu", workers=args.workers, overwrite=True,
                       face_stage=SkippingFaceStage, progress=True)
    return 0 if index["complete"] and index["failed"] == index["manifest"]["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
