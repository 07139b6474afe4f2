"""DFER-CLIP's annotation lists: their names, their lines, and how a set of them becomes a manifest.

What the reference code (github.com/zengqunzhao/DFER-CLIP) expects, which this module follows:

- a line is `<frame-folder path> <frame count> <label index>`; dataloader/video_dataloader.py
  (`VideoDataset._parse_list`, `VideoRecord`) strips it and splits it on single spaces, so a
  path may hold no whitespace and fields are separated by exactly one space;
- the frames of a clip are every file in its folder (`glob(path/*)`), sorted by name, and the
  loader reads indices below the frame count;
- the label index is 0-based, in the order of models/Text.py: happiness, sadness, neutral,
  anger, surprise, disgust, fear (DFEW, FERV39k), then contempt, anxiety, helplessness,
  disappointment (MAFW) — our `datasets.BASIC_EMOTIONS + MAFW_EXTRA`; annotation/
  preprocess_annotation.py writes DFEW's 1-based labels minus one;
- the lists are named `DFEW_set_{k}_{train,test}.txt`, `MAFW_set_{k}_{train,test}.txt` (five
  folds; set k's train list is the other four test lists) and `FERV39K_{train,test}.txt` (main.py).

We name ours the same way: `<DATASET>_set_<k>_train.txt` / `_test.txt` for a dataset split into
`fold1..K`, else one `<DATASET>_<partition>.txt` per partition (`_train`, `_val`, `_test`, …).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

FOLD = re.compile(r"^fold(\d+)$")
_SET_LIST = re.compile(r"^(?P<prefix>.+)_set_(?P<k>\d+)_(?P<split>train|test)\.txt$")
_PLAIN_LIST = re.compile(r"^(?P<prefix>.+)_(?P<partition>[A-Za-z0-9-]+)\.txt$")
CLASSES_FILE = "classes.txt"   # written beside the lists by the exporter: one class a line, label order


class AnnotationListError(ValueError):
    """A list that cannot be read or turned into a manifest; the message names the file and line."""


@dataclass(frozen=True)
class ListEntry:
    path: str
    frames: int
    label: int
    source: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def list_prefix(dataset: str) -> str:
    """The lists' file-name prefix of a dataset: its name in capitals, as DFEW, MAFW, FERV39K."""
    return dataset.upper()


def fold_numbers(partitions: list[str] | tuple[str, ...]) -> list[int] | None:
    """[1..K] when the partitions are exactly fold1..foldK, else None."""
    numbers = [int(m.group(1)) for p in partitions if (m := FOLD.match(p))]
    if len(numbers) != len(partitions) or sorted(numbers) != list(range(1, len(numbers) + 1)):
        return None
    return sorted(numbers)


def list_plan(dataset: str, partitions: list[str] | tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """List file name -> the partitions whose clips it holds, in DFER-CLIP's naming."""
    prefix = list_prefix(dataset)
    folds = fold_numbers(partitions)
    if folds is None:
        return {f"{prefix}_{p}.txt": (p,) for p in partitions}
    plan = {}
    for k in folds:
        plan[f"{prefix}_set_{k}_train.txt"] = tuple(f"fold{j}" for j in folds if j != k)
        plan[f"{prefix}_set_{k}_test.txt"] = (f"fold{k}",)
    return plan


def format_line(path: str, frames: int, label: int) -> str:
    """One list line; refuses what the reference loader's split on single spaces would misread."""
    if not path or any(c.isspace() for c in path):
        raise AnnotationListError(f"path {path!r} is empty or holds whitespace, which DFER-CLIP's loader "
                                  "splits on: choose a folder (or --path-prefix) without spaces")
    if frames < 1 or label < 0:
        raise AnnotationListError(f"{path}: frames {frames} and label {label} must be >= 1 and >= 0")
    return f"{path} {frames} {label}\n"


def parse_list(source: Path) -> list[ListEntry]:
    """The entries of one list; blank lines are skipped, anything else the reference would misread
    is an error naming the file and line."""
    entries = []
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise AnnotationListError(f"{source}: cannot read the list: {err}") from None
    problems = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        fields = line.split(" ")
        if len(fields) != 3 or not all(fields):
            problems.append(f"{source}:{number}: expected '<path> <frames> <label index>' separated by single "
                            f"spaces, got {raw!r}")
            continue
        try:
            frames, label = int(fields[1]), int(fields[2])
        except ValueError:
            problems.append(f"{source}:{number}: frames {fields[1]!r} and label {fields[2]!r} must be integers")
            continue
        if frames < 1 or label < 0:
            problems.append(f"{source}:{number}: frames {frames} must be >= 1 and label {label} >= 0")
            continue
        entries.append(ListEntry(fields[0], frames, label, source, number))
    if problems:
        raise AnnotationListError("\n".join(problems[:30]) + (f"\n... and {len(problems) - 30} more"
                                                              if len(problems) > 30 else ""))
    return entries   # may be empty: a fold without clips has an empty test list


@dataclass(frozen=True)
class _Named:
    """What a list's file name says: the prefix, and either a fold (k, train|test) or a partition."""

    prefix: str
    fold: int | None
    split: str       # "train"/"test" of a fold list, or the partition of a plain list


def _name(path: Path) -> _Named:
    if m := _SET_LIST.match(path.name):
        return _Named(m["prefix"], int(m["k"]), m["split"])
    if m := _PLAIN_LIST.match(path.name):
        return _Named(m["prefix"], None, m["partition"].lower())
    raise AnnotationListError(f"{path}: a list's name must be <DATASET>_set_<k>_train.txt / _test.txt, or "
                              "<DATASET>_<partition>.txt (DFEW_set_1_test.txt, FERV39K_train.txt)")


def _relative_path(entry: ListEntry, data_root: Path) -> PurePosixPath:
    """The entry's frame folder relative to DATA_ROOT (absolute paths must lie under it)."""
    path = PurePosixPath(entry.path)
    if path.is_absolute():
        for root in dict.fromkeys((os.path.abspath(data_root), os.path.realpath(data_root))):
            normal = PurePosixPath(os.path.normpath(entry.path))
            if normal.is_relative_to(root):
                relative = normal.relative_to(root)
                if relative.parts:
                    return relative
        raise AnnotationListError(f"{entry.where}: {entry.path} is not under DATA_ROOT {os.path.abspath(data_root)}")
    if ".." in path.parts:
        raise AnnotationListError(f"{entry.where}: {entry.path} contains '..' and would leave DATA_ROOT")
    return path


@dataclass(frozen=True)
class ImportedLists:
    """A set of lists read as a dataset: its name (from the lists' prefix), partitions and rows."""

    name: str
    partitions: tuple[str, ...]
    rows: tuple[dict, ...]    # clip_id, path, label, partition, frames: manifest.write_manifest's rows


def read_lists(lists: list[Path], data_root: Path, classes: tuple[str, ...], id_parts: int | None = None
               ) -> ImportedLists:
    """Read DFER-CLIP lists as manifest rows. Fold lists (`_set_<k>_test`) give partition fold<k>;
    their `_set_<k>_train` lists, when given, must be exactly the other test lists. Plain lists give
    the partition their name ends in. A clip's id is its path relative to DATA_ROOT, or its last
    `id_parts` path components."""
    if not lists:
        raise AnnotationListError("no annotation lists given")
    named = {Path(p): _name(Path(p)) for p in lists}
    prefixes = sorted({n.prefix for n in named.values()})
    if len(prefixes) > 1:
        raise AnnotationListError(f"the lists name different datasets ({', '.join(prefixes)}): import one at a time")
    has_folds = {n.fold is not None for n in named.values()}
    if len(has_folds) > 1:
        raise AnnotationListError("fold lists (_set_<k>_) and plain lists cannot be mixed in one import")
    entries = {path: parse_list(path) for path in named}

    def row(entry: ListEntry, partition: str) -> dict:
        relative = _relative_path(entry, data_root)
        if not 0 <= entry.label < len(classes):
            raise AnnotationListError(f"{entry.where}: label index {entry.label} is outside the {len(classes)} "
                                      f"classes (0 = {classes[0]} … {len(classes) - 1} = {classes[-1]})")
        parts = relative.parts[-id_parts:] if id_parts else relative.parts
        return dict(clip_id="/".join(parts), path=relative.as_posix(), label=classes[entry.label],
                    partition=partition, frames=entry.frames, where=entry.where)

    rows: list[dict] = []
    if has_folds == {True}:
        tests = {n.fold: path for path, n in named.items() if n.split == "test"}
        folds = sorted(tests)
        if folds != list(range(1, len(folds) + 1)):
            raise AnnotationListError(f"fold test lists {', '.join(map(str, folds)) or 'none'} given: every fold's "
                                      "test list, _set_1_test.txt to _set_<K>_test.txt, is needed")
        for k in folds:
            rows += [row(e, f"fold{k}") for e in entries[tests[k]]]
        partitions = tuple(f"fold{k}" for k in folds)
        for path, n in named.items():
            if n.split != "train":
                continue
            expected = sorted((r["clip_id"], r["frames"], r["label"]) for r in rows if r["partition"] != f"fold{n.fold}")
            got = sorted((r["clip_id"], r["frames"], r["label"]) for r in (row(e, "train") for e in entries[path]))
            if got != expected:
                raise AnnotationListError(f"{path}: set {n.fold}'s train list is not the other folds' test lists "
                                          f"({len(set(got) - set(expected))} entries only here, "
                                          f"{len(set(expected) - set(got))} missing)")
    else:
        partitions = tuple(dict.fromkeys(n.split for n in named.values()))
        for path, n in named.items():
            rows += [row(e, n.split) for e in entries[path]]
    if not rows:
        raise AnnotationListError(f"the lists {', '.join(str(p) for p in named)} hold no entries")
    seen: dict[str, str] = {}
    for r in rows:
        if r["clip_id"] in seen:
            raise AnnotationListError(f"{r['where']}: clip {r['clip_id']!r} is also at {seen[r['clip_id']]}"
                                      + ("" if id_parts is None else f" (--id-parts {id_parts} is too few to tell "
                                                                     "clips apart)"))
        seen[r["clip_id"]] = r["where"]
    return ImportedLists(prefixes[0].lower(), partitions, tuple({k: v for k, v in r.items() if k != "where"}
                                                                 for r in rows))


def classes_beside(lists: list[Path]) -> tuple[str, ...] | None:
    """The classes of a `classes.txt` in the first list's folder (the exporter writes one), if any."""
    path = Path(lists[0]).parent / CLASSES_FILE
    if not path.is_file():
        return None
    return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def choose_classes(lists: list[Path], dataset: str | None, classes: tuple[str, ...] | None
                   ) -> tuple[tuple[str, ...], str]:
    """(classes in label-index order, where they came from): given, else the built-in dataset's
    (named, or named by the lists' prefix), else a classes.txt beside the lists."""
    from pipeline.inputs.datasets import DATASETS

    named = dataset or _name(Path(lists[0])).prefix.lower()
    beside = classes_beside(lists)
    if classes:
        return tuple(classes), "--classes"
    if dataset in DATASETS:
        return DATASETS[dataset].classes, f"the built-in {dataset} dataset's order"
    if beside:
        return beside, str(Path(lists[0]).parent / CLASSES_FILE)
    if named in DATASETS:
        return DATASETS[named].classes, f"the built-in {named} dataset's order (from the lists' names)"
    raise AnnotationListError(f"the classes of {named!r} are unknown: give them in label-index order "
                              "(--classes a,b,c or CLASSES=a,b,c), name a built-in dataset, or put a classes.txt "
                              "(one class a line) beside the lists")


def import_lists(lists: list[Path], data_root: Path, out: Path | None = None, dataset: str | None = None,
                 classes: tuple[str, ...] | None = None, id_parts: int | None = None,
                 overwrite: bool = False) -> Path:
    """Write the manifest of DFER-CLIP lists (default DATA_ROOT/manifest.csv), validated by the
    manifest loader; returns its path. Raises AnnotationListError or ManifestError."""
    from pipeline.inputs.datasets import DATASETS
    from pipeline.inputs.manifest import ManifestError, load_manifest, write_manifest

    lists = [Path(p) for p in lists]
    if not Path(data_root).is_dir():
        raise AnnotationListError(f"DATA_ROOT {data_root} is not a folder: give the folder the lists' paths lie under")
    classes, origin = choose_classes(lists, dataset, classes)
    name = dataset or _name(lists[0]).prefix.lower()
    spec = DATASETS.get(name)
    if id_parts is None and spec is not None:
        id_parts = spec.list_id_parts
    imported = read_lists(lists, Path(data_root), classes, id_parts)
    if spec is not None and classes != spec.classes:
        raise AnnotationListError(f"classes from {origin} ({', '.join(classes)}) differ from the built-in {name} "
                                  f"dataset's ({', '.join(spec.classes)}): give another dataset name")
    out = Path(out) if out else Path(data_root) / "manifest.csv"
    if out.exists() and not overwrite:
        raise AnnotationListError(f"{out} exists: choose another --manifest (MANIFEST=), or --overwrite (OVERWRITE=1)")
    comment = (f"Imported from DFER-CLIP annotation lists ({', '.join(p.name for p in lists)}) by "
               f"python -m pipeline.preprocess --import-list; classes from {origin}.")
    header = dict(dataset=name) if spec is not None else dict(dataset=name, classes=classes,
                                                               partitions=imported.partitions)
    write_manifest(out, list(imported.rows), comment=comment, **header)
    try:
        load_manifest(out)
    except ManifestError:
        out.unlink()
        raise
    return out
