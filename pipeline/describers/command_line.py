"""The describer options of `make preprocess` and `make describe` (python -m pipeline.preprocess and
python -m pipeline.describe), and their defaults from the environment, which `make VAR=value` sets:
DESCRIBER (preprocess: the describer instead of the profile's), DESCRIBER_MODEL (a model id or local
folder) and DESCRIBE_BATCH_SIZE (clips a video-LLM describer decodes together)."""

from __future__ import annotations

import argparse
import os

from pipeline.backends import DESCRIBERS


def describer_from_env(parser: argparse.ArgumentParser) -> str | None:
    """The DESCRIBER environment variable (set by `make ... DESCRIBER=`), checked against the registry."""
    chosen = os.environ.get("DESCRIBER", "").strip() or None
    if chosen is not None and chosen not in list(DESCRIBERS) + ["none"]:
        parser.error(f"DESCRIBER={chosen} is not a describer; choose from {', '.join(sorted(DESCRIBERS))} or none")
    return chosen


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def add_describer_options(parser: argparse.ArgumentParser) -> None:
    """The options of the video-LLM describers, shared by make preprocess and make describe."""
    parser.add_argument("--describer-model", default=os.environ.get("DESCRIBER_MODEL") or None,
                        help="videollava, qwen2.5-vl: model id on the Hugging Face Hub or a local folder "
                             "(default from DESCRIBER_MODEL, else the describer's default checkpoint)")
    parser.add_argument("--describer-revision", help="videollava, qwen2.5-vl: model revision (commit, tag)")
    parser.add_argument("--describer-setting", choices=["ours", "reference"],
                        help="videollava, qwen2.5-vl: our instruction and full emotion filter (default), or "
                             "FineCLIPER's request for facial changes with a light filter")
    size = os.environ.get("DESCRIBE_BATCH_SIZE", "").strip()
    try:
        default = positive_int(size) if size else None
    except (ValueError, argparse.ArgumentTypeError):
        parser.error(f"DESCRIBE_BATCH_SIZE={size} is not a positive whole number")
    parser.add_argument("--describe-batch-size", type=positive_int, default=default,
                        help="videollava, qwen2.5-vl: clips decoded together (default from DESCRIBE_BATCH_SIZE, "
                             "else 4 for videollava, 8 for qwen2.5-vl)")
