"""`make export`: a dataset folder's face crops as frame folders with DFER-CLIP annotation lists.

    python -m pipeline.interop.export shards/sample --format frames --dest exports/sample
        [--path-prefix /data/sample-frames] [--overwrite]

Each clip's frames go to DEST/<clip_id>/00001.jpg, 00002.jpg, … — the JPEGs stored in the
shards, copied byte for byte (no re-encoding), so another codebase reads exactly the pixels our
trainer reads. The annotation lists go to DEST/annotation/, named and written as DFER-CLIP's
(pipeline/interop/annotation_lists.py: `<path> <frames> <0-based label>`, one pair of lists per
fold, or one list per partition), with classes.txt (the label order) beside them. Paths in the
lists are DEST's absolute path (or `--path-prefix`, for a copy moved elsewhere) + `/<clip_id>`.
Only clips the pipeline wrote are exported; failed clips (status tables) have no frames.
DEST/export.json records the source, classes and counts; it is written first with
"complete": false and rewritten at the end, so a folder of a broken export is recognised and
`--overwrite` replaces it. The shards are read with pipeline.shards, nothing of the trainer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path, PurePosixPath

from pipeline.interop.annotation_lists import CLASSES_FILE, AnnotationListError, format_line, list_plan
from pipeline.shards.files import write_atomic
from pipeline.shards.folder import INDEX
from pipeline.shards.reader import list_shards, read_shard

FORMATS = ("frames",)
LISTS_DIR = "annotation"
RECORD = "export.json"
RESERVED = (LISTS_DIR, RECORD)


class ExportError(RuntimeError):
    """An export that cannot start or go on; the message says why and what to do."""


def frame_name(index: int) -> str:
    """The file name of frame `index` (0-based): 1-based, five digits, as DFEW's frame folders."""
    return f"{index + 1:05d}.jpg"


def _read_index(shards: Path) -> dict:
    path = shards / INDEX
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path} not found: is {shards} a folder written by make preprocess?") from None
    except json.JSONDecodeError as err:
        raise ExportError(f"{path}: not JSON ({err})") from None
    if not index.get("complete"):
        missing = ", ".join(index.get("missing_shards", [])[:5]) or "unknown"
        raise ExportError(f"{shards} is not complete (missing shards: {missing}): finish make preprocess "
                          "before exporting, so that the lists hold every clip")
    return index


def _prepare(dest: Path, overwrite: bool) -> None:
    """An empty DEST, or a former export replaced with --overwrite; anything else is left alone."""
    if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
        dest.mkdir(parents=True, exist_ok=True)
        return
    if not dest.is_dir():
        raise ExportError(f"DEST {dest} exists and is not a folder")
    if not (dest / RECORD).is_file():
        raise ExportError(f"DEST {dest} is not empty and holds no {RECORD}: choose an empty or new folder "
                          "(the exporter never deletes what it did not write)")
    if not overwrite:
        raise ExportError(f"DEST {dest} holds an earlier export: choose another folder, or --overwrite "
                          "(OVERWRITE=1) to replace it")
    shutil.rmtree(dest)
    dest.mkdir(parents=True)


def _clip_folder(dest: Path, clip_id: str) -> Path:
    parts = PurePosixPath(clip_id).parts
    if not parts or parts[0] in RESERVED or any(p in ("", ".", "..") for p in parts):
        raise ExportError(f"clip id {clip_id!r} cannot name a folder of DEST ({', '.join(RESERVED)} are taken)")
    return dest.joinpath(*parts)


def export_frames(shards: Path | str, dest: Path | str, path_prefix: str | None = None, overwrite: bool = False,
                  quiet: bool = False) -> dict:
    """Export every clip of the dataset folder `shards` into `dest`; returns the export record."""
    shards, dest = Path(shards), Path(dest)
    index = _read_index(shards)
    dataset, classes, partitions = index["dataset"], list(index["classes"]), list(index["partitions"])
    prefix = (path_prefix or os.path.abspath(dest)).rstrip("/")
    format_line(prefix, 1, 0)   # a prefix the reference loader would split is refused before anything is written
    _prepare(dest, overwrite)
    record = {"format": "frames", "source": os.path.abspath(shards), "dataset": dataset, "classes": classes,
              "partitions": partitions, "path_prefix": prefix, "frame_names": "00001.jpg, 00002.jpg, ...",
              "label_index": "0-based, in the order of classes", "complete": False}
    write_atomic(dest / RECORD, json.dumps(record, indent=1) + "\n")

    lines: dict[str, list[str]] = {p: [] for p in partitions}
    frames_written = 0
    for partition in partitions:
        for clip in (clip for tar in list_shards(shards, [partition]) for clip in read_shard(tar)):
            clip_id = clip.meta["clip_id"]
            folder = _clip_folder(dest, clip_id)
            if folder.exists():
                raise ExportError(f"clip {clip_id!r} appears twice in {shards}")
            folder.mkdir(parents=True)
            for t in range(clip.num_frames):
                (folder / frame_name(t)).write_bytes(clip.frame_jpeg(t))
            frames_written += clip.num_frames
            if clip.label not in classes:
                raise ExportError(f"clip {clip_id!r}: class {clip.label!r} is not among {shards / INDEX}'s classes")
            lines[partition].append(format_line(f"{prefix}/{clip_id}", clip.num_frames, classes.index(clip.label)))
        if not quiet:
            print(f"{partition}: {len(lines[partition])} clips")

    lists_dir = dest / LISTS_DIR
    lists_dir.mkdir()
    written = {}
    for name, members in list_plan(dataset, partitions).items():
        body = [line for p in members for line in lines[p]]
        write_atomic(lists_dir / name, "".join(body))
        written[name] = len(body)
    write_atomic(lists_dir / CLASSES_FILE, "".join(f"{c}\n" for c in classes))
    record.update(complete=True, clips=sum(len(v) for v in lines.values()), frames=frames_written,
                  clips_per_partition={p: len(v) for p, v in lines.items()},
                  failed_clips_not_exported=index.get("failed", 0), lists=written)
    write_atomic(dest / RECORD, json.dumps(record, indent=1) + "\n")
    if not quiet:
        print(f"{record['clips']} clips, {frames_written} frames into {dest}; "
              f"{len(written)} lists in {lists_dir} ({record['failed_clips_not_exported']} failed clips have no frames)")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.interop.export", description=__doc__.split("\n")[0])
    parser.add_argument("shards", type=Path, help="a dataset folder written by make preprocess (OUT)")
    parser.add_argument("--format", choices=FORMATS, default="frames",
                        help="frames: DEST/<clip_id>/00001.jpg… and DFER-CLIP annotation lists in DEST/annotation/")
    parser.add_argument("--dest", type=Path, required=True, help="an empty or new folder (DEST)")
    parser.add_argument("--path-prefix", help="the folder the lists name instead of DEST's absolute path "
                                              "(where the export will be read from)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in DEST")
    args = parser.parse_args(argv)
    try:
        export_frames(args.shards, args.dest, args.path_prefix, args.overwrite)
    except (ExportError, AnnotationListError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
