"""Look at what the pipeline wrote: a dataset folder's summary, and contact sheets of single clips.

    python -m pipeline.inspect_shards summary shards/sample
    python -m pipeline.inspect_shards sheet shards/sample --clip surprise_03 [--out sheet.png] [--gif clip.gif]
    python -m pipeline.inspect_shards sheet shards/sample/fold1-000000.tar      # the shard's first clip

A contact sheet shows frames spread over the clip in three rows — the face crop, the crop
with its 68 landmarks drawn, the crop with its parsing mask blended in — with the metadata
as a caption above and the motion description printed beneath. Frames without a confirmed
face (`face_detected` false, landmark confidence 0) are framed in red. `--gif` also writes the
clip with landmarks overlaid as an animated GIF.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np

from pipeline.shards.layout import (INNER_LIPS, JAW, LEFT_BROW, LEFT_EYE, NOSE_BASE, NOSE_BRIDGE, OUTER_LIPS,
                                   PARSING_PALETTE, RIGHT_BROW, RIGHT_EYE)
from pipeline.shards.format import ClipSample
from pipeline.shards.reader import list_shards, read_shard

_GROUPS = (JAW, RIGHT_BROW, LEFT_BROW, NOSE_BRIDGE, NOSE_BASE, RIGHT_EYE, LEFT_EYE, OUTER_LIPS, INNER_LIPS)


def summary(folder: Path) -> str:
    """The dataset index as readable text."""
    index_path = folder / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} not found: is {folder} a folder written by make preprocess?")
    index = json.loads(index_path.read_text())
    classes, partitions = index["classes"], index["partitions"]
    width = max(len(c) for c in classes) + 2
    lines = [f"{index['dataset']}: {index['ok']} clips ok, {index['failed']} failed, "
             f"{len(index['shards'])} shards, {index['bytes'] / 2**20:.1f} MiB, format v{index['format_version']}"
             + ("" if index["complete"] else f" — INCOMPLETE, {len(index['missing_shards'])} shards missing"),
             "class".ljust(width) + "".join(p.rjust(9) for p in partitions) + "total".rjust(9)]
    for c in classes:
        row = [index["counts"][p][c] for p in partitions]
        lines.append(c.ljust(width) + "".join(f"{n:9d}" for n in row) + f"{sum(row):9d}")
    lines.append("failures: " + (", ".join(f"{k} {v}" for k, v in index["failures"].items()) or "none"))
    config = index["config"]
    lines.append(f"profile {config.get('profile')}, crop {config.get('crop', 'detect')} {config.get('crop_size')} px, "
                 f"at most {config.get('max_frames')} frames, describer {config.get('describer')}")
    for part, identity in index["models"].items():
        if identity:
            what = identity.get("model") or identity.get("backend")
            version = identity.get("sha256", identity.get("revision", identity.get("version", "")))
            lines.append(f"  {part:12s} {identity.get('backend')}: {what} {str(version)[:16]}")
    return "\n".join(lines)


def find_clip(source: Path, clip_id: str | None) -> ClipSample:
    """A clip by id from a dataset folder, or the first clip of a shard."""
    shards = [source] if source.is_file() else list_shards(source)
    for shard in shards:
        for clip in read_shard(shard):
            if clip_id is None or clip.meta["clip_id"] == clip_id or clip.key == clip_id:
                return clip
    raise KeyError(f"clip {clip_id!r} not found in {source}" if clip_id else f"no clip in {source}")


def draw_landmarks(image: np.ndarray, points: np.ndarray, colour=(0, 255, 0)) -> np.ndarray:
    out = image.copy()
    scale = max(1, image.shape[0] // 224)
    for group in _GROUPS:
        cv2.polylines(out, [np.round(points[list(group)] * 16).astype(np.int32)], False, colour, scale,
                      cv2.LINE_AA, 4)
    for x, y in points:
        cv2.circle(out, (int(round(x)), int(round(y))), scale + 1, (255, 255, 0), -1, cv2.LINE_AA)
    return out


def contact_sheet(clip: ClipSample, columns: int = 8, tile: int = 160) -> np.ndarray:
    """Frames × (crop, landmarks, mask) with a caption and the description, as an RGB image."""
    picks = np.unique(np.linspace(0, clip.num_frames - 1, min(columns, clip.num_frames)).round().astype(int))
    frames = clip.frames(picks)
    masks = clip.masks(picks)
    rows = [[], [], []]
    for i, t in enumerate(picks):
        crop = frames[i]
        rows[0].append(crop)
        rows[1].append(draw_landmarks(crop, clip.landmarks[t]))
        blend = crop if masks is None else cv2.addWeighted(crop, 0.45, PARSING_PALETTE[masks[i]], 0.55, 0)
        rows[2].append(blend)
    faceless = [not clip.face_detected[t] for t in picks]
    grid = np.concatenate([np.concatenate([_framed(cv2.resize(im, (tile, tile)), red) for im, red in zip(row, faceless)],
                                          axis=1) for row in rows])
    meta = clip.meta
    caption = (f"{meta['dataset']} / {meta['clip_id']}  class {meta['label']}  partition {meta['partition']}  "
               f"{clip.num_frames} frames @ {meta['source'].get('fps', 0):.1f} fps  "
               f"face frames {int(clip.face_detected.sum())}/{clip.num_frames}  "
               f"landmark conf {float(clip.landmarks_conf.mean()):.2f}")
    times = "  ".join(f"t={clip.timestamps[t]:.2f}s" for t in picks)
    text = clip.description or "(no description)"
    record = clip.description_record or {}
    source = f"description ({record.get('backend', '?')}): "
    wrapped = textwrap.wrap(source + text, width=max(40, grid.shape[1] // 8))
    header = _text_panel([caption, times], grid.shape[1])
    footer = _text_panel(wrapped, grid.shape[1])
    return np.concatenate([header, grid, footer])


def _framed(image: np.ndarray, red: bool) -> np.ndarray:
    """The tile, framed in red when its frame has no confirmed face."""
    if red:
        image = image.copy()
        cv2.rectangle(image, (1, 1), (image.shape[1] - 2, image.shape[0] - 2), (230, 0, 0), 3)
    return image


def _text_panel(lines: list[str], width: int) -> np.ndarray:
    panel = np.full((14 + 18 * len(lines), width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(panel, line, (6, 18 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    return panel


def write_gif(clip: ClipSample, path: Path, size: int = 224) -> Path:
    """The clip with its landmarks, as an animated GIF at the clip's own frame rate."""
    from PIL import Image

    frames = clip.frames()
    images = [Image.fromarray(cv2.resize(draw_landmarks(f, p), (size, size))) for f, p in zip(frames, clip.landmarks)]
    durations = np.diff(np.append(clip.timestamps, clip.timestamps[-1] + 0.04)) * 1000
    images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                   duration=[max(20, int(d)) for d in durations])
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.inspect_shards", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary", help="counts per partition and class, failures, models")
    s.add_argument("folder", type=Path)
    c = sub.add_parser("sheet", help="a contact sheet PNG of one clip")
    c.add_argument("source", type=Path, help="a dataset folder or one shard (.tar)")
    c.add_argument("--clip", help="clip id (default: the first clip)")
    c.add_argument("--out", type=Path, help="default: <clip id>.png in the current folder")
    c.add_argument("--gif", type=Path, help="also write the clip with landmarks as an animated GIF")
    args = parser.parse_args(argv)
    try:
        if args.command == "summary":
            print(summary(args.folder))
            return 0
        clip = find_clip(args.source, args.clip)
        out = args.out or Path(f"{clip.key}.png")
        cv2.imwrite(str(out), cv2.cvtColor(contact_sheet(clip), cv2.COLOR_RGB2BGR))
        print(f"contact sheet: {out}")
        if args.gif:
            print(f"animation: {write_gif(clip, args.gif)}")
    except (FileNotFoundError, KeyError) as err:
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
