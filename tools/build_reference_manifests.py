"""Rebuild manifests/{mafw,dfew,ferv39k}.csv from the DFER-CLIP annotation files.

    python tools/build_reference_manifests.py REFERENCE_DIR

REFERENCE_DIR holds `MAFW_set_{k}_{train,test}.txt`, `DFEW_set_{k}_{train,test}.txt` and
`FERV39K_{train,test}.txt`: the `annotation/` folder of a DFER-CLIP checkout
(github.com/zengqunzhao/DFER-CLIP). Each line
there is `<frame-folder path> <frames> <0-based label>`, with the DFER-CLIP label order
(datasets.BASIC_EMOTIONS + MAFW_EXTRA). A clip's partition is the test fold it belongs to;
the script checks that the five test sets are disjoint, cover every clip, and that each
train list is exactly the other four test sets, before writing anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.inputs.datasets import BASIC_EMOTIONS, DATASETS, MAFW_EXTRA  # noqa: E402
from pipeline.inputs.manifest import write_manifest  # noqa: E402

REFERENCE_LABELS = BASIC_EMOTIONS + MAFW_EXTRA


def read_annotations(path: Path, id_parts: int) -> dict[str, tuple[int, str]]:
    """clip id -> (frames, class name); the id is the last `id_parts` path components."""
    out: dict[str, tuple[int, str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        folder, frames, label = line.split()
        clip_id = "/".join(folder.rstrip("/").split("/")[-id_parts:])
        if clip_id in out:
            raise SystemExit(f"{path}:{n}: clip {clip_id} listed twice")
        out[clip_id] = (int(frames), REFERENCE_LABELS[int(label)])
    return out


def folds(ref: Path, prefix: str, path_template: str) -> list[dict]:
    tests = [read_annotations(ref / f"{prefix}_set_{k}_test.txt", 1) for k in range(1, 6)]
    everything: dict[str, tuple[int, str]] = {}
    rows = []
    for k, test in enumerate(tests, 1):
        for clip_id, (frames, label) in test.items():
            if clip_id in everything:
                raise SystemExit(f"{prefix}: clip {clip_id} is in two test folds")
            everything[clip_id] = (frames, label)
            rows.append(dict(clip_id=clip_id, path=path_template.format(clip_id=clip_id),
                             label=label, partition=f"fold{k}", frames=frames))
    for k in range(1, 6):
        train = read_annotations(ref / f"{prefix}_set_{k}_train.txt", 1)
        expected = {c: v for j, t in enumerate(tests, 1) if j != k for c, v in t.items()}
        if train != expected:
            raise SystemExit(f"{prefix}: set {k} train list is not the union of the other test folds")
    return sorted(rows, key=lambda r: r["clip_id"])


def ferv39k(ref: Path) -> list[dict]:
    rows = []
    for part in ("train", "test"):
        for clip_id, (frames, label) in read_annotations(ref / f"FERV39K_{part}.txt", 3).items():
            rows.append(dict(clip_id=clip_id, path=f"2_ClipsforFaceCrop/{clip_id}",
                             label=label, partition=part, frames=frames))
    ids = [r["clip_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise SystemExit("FERV39k: a clip is in both train and test")
    return sorted(rows, key=lambda r: r["clip_id"])


def main() -> None:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        raise SystemExit("usage: python tools/build_reference_manifests.py REFERENCE_DIR (the annotation/ folder "
                         "of a DFER-CLIP checkout, github.com/zengqunzhao/DFER-CLIP)")
    ref = Path(sys.argv[1])
    source = ("Converted from the DFER-CLIP annotation files (MIT licence) by "
              "tools/build_reference_manifests.py.\n"
              "partition = the test fold the clip belongs to; frames = face frames annotated.")
    built = {
        "mafw": folds(ref, "MAFW", "data/clips/{clip_id}.mp4"),
        "dfew": folds(ref, "DFEW", "DFEW_Frame_Face/{clip_id}"),
        "ferv39k": ferv39k(ref),
    }
    for name, rows in built.items():
        write_manifest(DATASETS[name].manifest_path(), rows, dataset=name, comment=source)
        print(f"{DATASETS[name].manifest_path()}: {len(rows)} clips")


if __name__ == "__main__":
    main()
