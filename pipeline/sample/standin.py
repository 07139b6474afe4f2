"""Stand-in datasets of the real shape: DFEW, FERV39k or MAFW as their face-crop frame folders,
filled with face crops of the sample, so that runs of full size can be made without the data.

    python -m pipeline.sample standin ferv39k [--clips 1000] [--out data/standin-ferv39k] [--sample data/sample]
    make standin DATASET=ferv39k [CLIPS=1000]

What is real: the clip ids, the folders (the dataset's own face-crop layout, one that
`--crop official` reads), the class and partition of every clip and its frame count, all from
the built-in manifest (`pipeline/manifests/`, found through `load_manifest`). What is not: the
pixels. Every frame is a hard link to one JPEG of a small pool of 224-px face crops cut from
the sample's clips along their ground-truth landmarks (`<out>/.pool/`: by default 8 sequences
of up to 48 frames, one clip per class), so a million frames cost directory entries, not
bytes. Clip k of the manifest plays pool sequence k mod 8, frame i its frame i (back and forth
when the clip is longer), so a clip's frames move as the sample's faces do.

`--clips N` takes a subset of N clips stratified by partition and class: each (partition,
class) stratum gets its share of N (largest remainders; at least one clip each when N allows),
its clips spread evenly over the stratum in manifest order, so FERV39k's scenes are all drawn
from. The subset's manifest (`# dataset: <name>`: the built-in classes and layouts) is written
to `<out>/manifest.csv`; the frame folders of clips outside it, left by an earlier larger
build, stay (they are not read). A rebuild reuses every clip folder already holding the right
frames.

Identical frames are not real ones: a frame folder read from the page cache, the same few
pixels decoded again and again, landmark fits on the same faces. docs/benchmarks.md says how
much cheaper they make the pipeline (measured: bench/probes/standin_frames.py).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.inputs.manifest import Manifest, ManifestRow, load_manifest, write_manifest


@dataclass(frozen=True)
class StandinLayout:
    """Where a dataset keeps its face-crop frames, and how its frame files are named (`{clip}` is
    the clip id's last part, `{n}` the 1-based frame number)."""

    folder: str
    frame: str


# The forms the datasets are distributed in: DFEW's `Clip/clip_224x224/<id>/`, FERV39k's
# `2_ClipsforFaceCrop/<scene>/<emotion>/<id>/`, MAFW's `data/faces/<id>/`. Each folder is one of
# the dataset's official-crop layouts (pipeline/inputs/datasets.py), tested. The file names are
# ours: the pipeline orders a folder's images by natural sort whatever their names.
LAYOUTS = {
    "dfew": StandinLayout("Clip/clip_224x224/{clip_id}", "{clip}_{n:05d}.jpg"),
    "ferv39k": StandinLayout("2_ClipsforFaceCrop/{clip_id}", "{n:04d}.jpg"),
    "mafw": StandinLayout("data/faces/{clip_id}", "{n:05d}.jpg"),
}
POOL_DIR = ".pool"
POOL_SEQUENCES, POOL_FRAMES, CROP_SIDE = 8, 48, 224
RECORD = "standin.json"


def default_out(dataset: str) -> Path:
    return Path("data") / f"standin-{dataset}"


# ----------------------------------------------------------------------------- the subset
def stratified_rows(manifest: Manifest, clips: int | None) -> list[ManifestRow]:
    """`clips` rows of the manifest, stratified by (partition, class), in manifest order (None: all)."""
    if clips is None or clips >= len(manifest):
        return list(manifest.rows)
    if clips < 1:
        raise ValueError(f"--clips must be at least 1, not {clips}")
    strata: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, row in enumerate(manifest.rows):
        strata[(row.partition, row.label)].append(i)
    keys = sorted(strata)
    share = {k: clips * len(strata[k]) / len(manifest) for k in keys}
    take = {k: int(share[k]) for k in keys}
    if clips >= len(keys):   # every stratum represented: the smallest classes too
        for k in keys:
            take[k] = max(take[k], 1)
    # Largest remainders fill (or trim) to exactly `clips`; ties broken by stratum size, then name.
    by_remainder = sorted(keys, key=lambda k: (share[k] - int(share[k]), len(strata[k]), k), reverse=True)
    while sum(take.values()) < clips:
        for k in by_remainder:
            if sum(take.values()) < clips and take[k] < len(strata[k]):
                take[k] += 1
    while sum(take.values()) > clips:
        k = max((k for k in keys if take[k] > 1), key=lambda k: take[k] - share[k])
        take[k] -= 1
    chosen = []
    for k in keys:
        members, n = strata[k], take[k]
        chosen += [members[int((j + 0.5) * len(members) / n)] for j in range(n)]
    return [manifest.rows[i] for i in sorted(chosen)]


# ----------------------------------------------------------------------------- the pool
def _crop_square(frame: np.ndarray, landmarks: np.ndarray, side: int) -> np.ndarray:
    """A face crop as the datasets cut them: a square of 1.3× the landmarks' extent, raised a little."""
    lo, hi = landmarks.min(0), landmarks.max(0)
    extent = 1.3 * float((hi - lo).max())
    centre = (lo + hi) / 2 - np.array([0.0, 0.05 * extent])
    scale = side / extent
    affine = np.array([[scale, 0, side / 2 - centre[0] * scale], [0, scale, side / 2 - centre[1] * scale]])
    return cv2.warpAffine(frame, affine, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def make_pool(sample: Path, out: Path, sequences: int = POOL_SEQUENCES, frames: int = POOL_FRAMES,
              side: int = CROP_SIDE) -> list[list[Path]]:
    """Face-crop JPEGs of the sample in `out`: `sequences` clips (the most intense of each class in
    turn), up to `frames` frames each. Reused when `out` holds a pool made with the same settings."""
    from pipeline.sample.generate import read_clip_frames

    settings = {"sample": str(sample.resolve()), "sequences": sequences, "frames": frames, "side": side}
    record = out / "pool.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        if saved["settings"] == settings and all((out / p).is_file() for seq in saved["files"] for p in seq):
            return [[out / p for p in seq] for seq in saved["files"]]
    truth_file = sample / "ground_truth.json"
    if not truth_file.is_file():
        raise FileNotFoundError(f"{truth_file} not found: generate the sample first (make sample)")
    truth = json.loads(truth_file.read_text())["clips"]
    usable = [c for c in truth.values() if c["expected_failure"] is None]
    by_class: dict[str, list[dict]] = defaultdict(list)
    for clip in sorted(usable, key=lambda c: (-c["intensity"], c["clip_id"])):
        by_class[clip["label"]].append(clip)
    order = []   # the most intense clip of each class, then the second of each, ...
    for rank in range(max(len(v) for v in by_class.values())):
        order += [by_class[label][rank] for label in sorted(by_class) if rank < len(by_class[label])]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    files = []
    for k, clip in enumerate(order[:sequences]):
        images = read_clip_frames(sample / clip["path"])
        landmarks = np.load(sample / "truth" / f"{clip['clip_id']}.npz")["landmarks"]
        names = []
        for t in range(min(frames, len(images))):
            name = f"s{k:02d}/{t:03d}.jpg"
            (out / name).parent.mkdir(exist_ok=True)
            crop = _crop_square(images[t], landmarks[t], side)
            cv2.imwrite(str(out / name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            names.append(name)
        files.append(names)
    record.write_text(json.dumps({"settings": settings, "files": files}, indent=1) + "\n")
    return [[out / p for p in seq] for seq in files]


def pool_frame(sequence: list[Path], i: int) -> Path:
    """Frame i of a clip playing `sequence` forwards, then backwards, and so on."""
    n = len(sequence)
    if n == 1:
        return sequence[0]
    period = 2 * (n - 1)
    j = i % period
    return sequence[j if j < n else period - j]


# ----------------------------------------------------------------------------- the folders
def clip_frame_names(layout: StandinLayout, row: ManifestRow, frames: int) -> list[str]:
    last = row.clip_id.rsplit("/", 1)[-1]
    return [layout.frame.format(clip=last, n=n) for n in range(1, frames + 1)]


def _fill_clip(folder: Path, names: list[str], sources: list[Path], distinct: bool) -> bool:
    """Make `folder` hold exactly `names`, linked to `sources` (or, `distinct`, each a JPEG of its
    own); False when it did already and nothing was written."""
    if folder.is_dir():
        present = sorted(os.listdir(folder))
        if present == sorted(names) and (distinct or all(
                os.path.samefile(folder / n, s) for n, s in zip(names[:1], sources[:1]))):
            return False
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, source in zip(names, sources):
        if distinct:
            _write_distinct(source, folder / name, zlib.crc32(str(folder / name).encode()))
        else:
            _link(source, folder / name)
    return True


def _link(source: Path, target: Path) -> None:
    """A hard link; a relative symbolic link where the file system has none (it stays inside DATA_ROOT)."""
    try:
        os.link(source, target)
    except OSError:
        os.symlink(os.path.relpath(source, target.parent), target)


def _write_distinct(source: Path, target: Path, seed: int) -> None:
    """A frame with bytes of its own: the pool frame, its pixels nudged by ±1 grey level here and there."""
    image = cv2.imread(str(source), cv2.IMREAD_COLOR)
    rng = np.random.default_rng(seed)
    nudge = rng.integers(-1, 2, size=image.shape[:2], dtype=np.int16)[..., None]
    image = np.clip(image.astype(np.int16) + nudge, 0, 255).astype(np.uint8)
    cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, 95])


def build_standin(dataset: str, out: Path | None = None, clips: int | None = None, sample: Path = Path("data/sample"),
                  pool: list[list[Path]] | None = None, distinct: bool = False, quiet: bool = False,
                  manifest_name: str = "manifest.csv") -> dict:
    """Write the stand-in of `dataset` (dfew, ferv39k, mafw) into `out` and its manifest.csv; returns
    what standin.json records. `pool`: sequences of JPEGs on the same file system as `out` (default:
    made from `sample` in `out/.pool`); `distinct`: every frame a JPEG file of its own instead of a link;
    `manifest_name`: the subset's manifest file in `out`."""
    if dataset not in LAYOUTS:
        raise ValueError(f"no stand-in for {dataset!r}: choose from {', '.join(sorted(LAYOUTS))}")
    started = time.perf_counter()
    out = Path(out or default_out(dataset))
    layout = LAYOUTS[dataset]
    manifest = load_manifest(dataset)
    position = {row.clip_id: i for i, row in enumerate(manifest.rows)}
    rows = stratified_rows(manifest, clips)
    out.mkdir(parents=True, exist_ok=True)
    pool = pool if pool is not None else make_pool(sample, out / POOL_DIR)
    written = frames = 0
    for done, row in enumerate(rows, 1):
        count = row.frames or 16
        names = clip_frame_names(layout, row, count)
        sequence = pool[position[row.clip_id] % len(pool)]
        written += _fill_clip(out / layout.folder.format(clip_id=row.clip_id), names,
                              [pool_frame(sequence, i) for i in range(count)], distinct)
        frames += count
        if not quiet and (done % 2000 == 0 or done == len(rows)):
            print(f"  stand-in {dataset}: {done}/{len(rows)} clips", flush=True)
    subset = "" if len(rows) == len(manifest) else \
        f", a subset stratified by partition and class ({len(rows)} of {len(manifest)} clips)"
    write_manifest(out / manifest_name, list(rows), dataset=manifest.name,
                   comment=f"Stand-in of {dataset} written by pipeline/sample/standin.py{subset}.")
    record = {
        "dataset": dataset, "clips": len(rows), "manifest_clips": len(manifest), "frames": frames,
        "clip_folders_written": written, "layout": layout.folder, "frame_names": layout.frame,
        "pool": {"sequences": len(pool), "images": sum(len(s) for s in pool), "distinct_files": distinct},
        "partitions": {p: sum(r.partition == p for r in rows) for p in manifest.partitions},
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    if not quiet:
        print(f"  stand-in {dataset}: {len(rows)} clips, {frames:,} frames in {out} "
              f"({written} clip folders written, {record['seconds']} s); manifest {out / manifest_name}")
    return record
