"""`make sample`: generate the sample dataset, or draw its contact sheet.

    python -m pipeline.sample generate [--out data/sample] [--seed 0] [--clips-per-class 10] [--if-missing]
    python -m pipeline.sample sheet [--data data/sample] [--landmarks]
    python -m pipeline.sample standin ferv39k [--clips 1000] [--out data/standin-ferv39k]   # make standin
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.sample.generate import DEFAULT_OUT, contact_sheet, generate
from pipeline.sample.standin import LAYOUTS, build_standin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.sample", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write the sample dataset (replacing the folder)")
    gen.add_argument("--out", type=Path, default=DEFAULT_OUT)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--clips-per-class", type=int, default=10)
    gen.add_argument("--face", type=Path, action="append", help="a portrait to animate (repeatable)")
    gen.add_argument("--workers", type=int, default=None)
    gen.add_argument("--relax-smile", type=float, default=None,
                     help="undo this much of the photo's smile for the rest pose (default 0.8 built-in, 0 own faces)")
    gen.add_argument("--if-missing", action="store_true", help="do nothing when the dataset exists")
    sheet = sub.add_parser("sheet", help="contact sheet PNG of one clip per class")
    sheet.add_argument("--data", type=Path, default=DEFAULT_OUT)
    sheet.add_argument("--out", type=Path, default=None)
    sheet.add_argument("--landmarks", action="store_true", help="draw the ground-truth landmarks")
    standin = sub.add_parser("standin", help="a stand-in of DFEW, FERV39k or MAFW: the real layout, ids and frame "
                                            "counts, the sample's faces (pipeline/sample/standin.py)")
    standin.add_argument("dataset", choices=sorted(LAYOUTS))
    standin.add_argument("--clips", type=int, default=None, help="a subset stratified by partition and class")
    standin.add_argument("--out", type=Path, default=None, help="default data/standin-<dataset>")
    standin.add_argument("--sample", type=Path, default=DEFAULT_OUT, help="the sample dataset the faces come from")
    args = parser.parse_args(argv)
    if args.command == "standin":
        if args.clips is not None and args.clips < 1:
            parser.error("--clips must be at least 1")
        build_standin(args.dataset, args.out, args.clips, args.sample)
        return 0
    if args.command == "generate":
        if args.if_missing and (args.out / "manifest.csv").is_file():
            print(f"  sample dataset: already in {args.out}")
            return 0
        if args.clips_per_class < 1:
            parser.error("--clips-per-class must be at least 1")
        generate(args.out, args.seed, args.clips_per_class, args.face, args.workers, relax_smile=args.relax_smile)
    else:
        print(f"  contact sheet: {contact_sheet(args.data, args.out, show_landmarks=args.landmarks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
