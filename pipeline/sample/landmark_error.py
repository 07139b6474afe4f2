"""How far the pipeline's landmarks are from the sample dataset's ground truth (NME).

The sample generator knows where every one of the 68 points of its animated face is, in the
source frame's pixels (`truth/<clip_id>.npz`). A shard records the crop square of every frame
(`boxes`, source pixels), so the truth maps into the crop exactly; the error of a frame is the
mean distance over the 68 points divided by the inter-ocular distance (eye centres) of the
truth, the usual normalised mean error. Used by the pipeline's tests and by
`bench/pipeline_speed.py`, which records it next to the speed so that a faster face stage is
also seen to be as accurate.

    python -m pipeline.sample.landmark_error shards/sample [--data data/sample]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.shards.layout import interocular_distance, source_to_crop


def frame_errors(landmarks: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-frame NME of landmarks (T, 68, 2) against truth in the same pixels."""
    return np.linalg.norm(landmarks - truth, axis=2).mean(1) / interocular_distance(truth)


def stored_frames(clip, truth_frames: int) -> np.ndarray:
    """Indices into the truth of the clip's stored frames: the face stage may trim faceless frames at
    either end (meta `quality.trimmed`). By index, not timestamp: a frame folder is timed at an assumed
    25 fps whatever the rate the generator gave its truth."""
    start = clip.meta.get("quality", {}).get("trimmed", {}).get("start", 0)
    if start + clip.num_frames > truth_frames:
        raise ValueError(f"{clip.key} has {clip.num_frames} frames from frame {start}, its truth {truth_frames}")
    return np.arange(start, start + clip.num_frames)


def landmark_nme(shards: str | Path, data: str | Path) -> dict:
    """NME of every ok sample in `shards` against the sample dataset at `data`: the mean and 95th
    percentile over all frames, the mean per clip, and the counts."""
    from pipeline.shards.reader import ShardReader

    data = Path(data)
    per_clip, errors = {}, []
    for clip in ShardReader(shards):
        clip_id = clip.meta["clip_id"]
        truth_file = data / "truth" / f"{clip_id}.npz"
        if not truth_file.is_file():
            raise FileNotFoundError(f"{truth_file}: no ground truth for {clip_id} (is {data} the sample dataset?)")
        with np.load(truth_file) as z:
            truth = z["landmarks"][stored_frames(clip, len(z["landmarks"]))]
        crop = clip.frames([0]).shape[1]
        e = frame_errors(clip.landmarks, source_to_crop(truth, clip.boxes, crop))
        per_clip[clip_id] = round(float(e.mean()), 5)
        errors.append(e)
    if not errors:
        raise ValueError(f"{shards}: no samples to measure")
    every = np.concatenate(errors)
    return {"nme_mean": round(float(every.mean()), 5), "nme_p95": round(float(np.percentile(every, 95)), 5),
            "nme_max": round(float(every.max()), 5), "clips": len(per_clip), "frames": int(len(every)),
            "per_clip": per_clip}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("shards", type=Path)
    parser.add_argument("--data", type=Path, default=Path("data/sample"))
    args = parser.parse_args(argv)
    result = landmark_nme(args.shards, args.data)
    print(json.dumps({k: v for k, v in result.items() if k != "per_clip"}))


if __name__ == "__main__":
    main()
