"""`make fetch-reference`: download DFER-CLIP's `models/Text.py` into the cache, its SHA-256 checked.

    python -m trainer.fetch_reference            # the pinned file, into ~/.cache/dfer-toolkit/reference/
    python -m trainer.fetch_reference --check    # is it there, with the recorded hash?

What is fetched, from where, and how RECIPE=reference reads it: trainer/reference_descriptions.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainer.reference_descriptions import COMMIT, PATH, SHA256, URL, cached_file, fetch, sha256_of


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.fetch_reference", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=URL, help=f"where to download it from (default: {PATH} at {COMMIT[:12]})")
    parser.add_argument("--sha256", default=SHA256, help="the hash the download must have (default: the recorded one)")
    parser.add_argument("--out", type=Path, help=f"where to write it (default {cached_file()})")
    parser.add_argument("--check", action="store_true", help="only say whether the cached file is there and intact")
    args = parser.parse_args(argv)
    if args.check:
        path = cached_file()
        present = path.is_file() and sha256_of(path) == SHA256
        print(f"{path}: {'present, SHA-256 checked' if present else 'absent (run make fetch-reference)'}")
        return 0 if present else 1
    try:
        path = fetch(args.url, args.sha256, args.out)
    except (RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{path}: SHA-256 {sha256_of(path)} checked; RECIPE=reference reads it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
