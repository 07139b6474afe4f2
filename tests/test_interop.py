"""Export to and import from other DFER code: the test-session shards exported as frame folders
with DFER-CLIP annotation lists, read back by the reference loader's rules (written out here, not
taken from our exporter), and imported again as a manifest."""

import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.inputs.manifest import ManifestError, load_manifest
from pipeline.interop.annotation_lists import AnnotationListError, import_lists
from pipeline.interop.export import ExportError, export_frames
from pipeline.interop.export import main as export_main
from pipeline.preprocess import main as preprocess_main
from pipeline.shards.reader import read_shard

# models/Text.py of github.com/zengqunzhao/DFER-CLIP: class_names_7, the label index order.
DFER_CLIP_CLASSES_7 = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")


def reference_parse(list_file: Path) -> list[tuple[str, int, int]]:
    """dataloader/video_dataloader.py: `x.strip().split(' ')` per line; path, int(frames), int(label)."""
    rows = [x.strip().split(" ") for x in open(list_file)]
    return [(row[0], int(row[1]), int(row[2])) for row in rows]


def reference_test_indices(num_frames: int, num_segments: int = 16, duration: int = 1) -> list[int]:
    """VideoDataset._get_test_indices and get(): the frame positions the test loader opens."""
    if num_frames > num_segments + duration - 1:
        tick = (num_frames - duration + 1) / float(num_segments)
        offsets = [int(tick / 2.0 + tick * x) for x in range(num_segments)]
    else:
        offsets = list(np.pad(np.arange(num_frames), (0, num_segments - num_frames), "edge"))
    positions = []
    for p in offsets:
        p = int(p)
        for _ in range(duration):
            positions.append(p)
            if p < num_frames - 1:
                p += 1
    return positions


def ok_clips(shards: Path) -> dict[str, tuple[str, str]]:
    """clip id -> (class, partition) of every clip the status tables call ok (independent of the exporter)."""
    out = {}
    for path in shards.glob("*.status.jsonl"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["status"] == "ok":
                out[row["clip_id"]] = (row["label"], row["partition"])
    return out


@pytest.fixture(scope="module")
def exported(sample_shards, tmp_path_factory):
    shards, _ = sample_shards
    dest = tmp_path_factory.mktemp("export") / "sample-frames"
    assert export_main([str(shards), "--format", "frames", "--dest", str(dest)]) == 0
    return shards, dest


def test_the_lists_read_as_dferclip_reads_them(exported):
    shards, dest = exported
    clips = ok_clips(shards)
    lists = dest / "annotation"
    folds = range(1, 6)
    assert sorted(p.name for p in lists.iterdir()) == sorted(
        ["classes.txt"] + [f"SAMPLE_set_{k}_{split}.txt" for k in folds for split in ("train", "test")])
    assert (lists / "classes.txt").read_text().split() == list(DFER_CLIP_CLASSES_7)
    for k in folds:
        test, train = reference_parse(lists / f"SAMPLE_set_{k}_test.txt"), reference_parse(lists / f"SAMPLE_set_{k}_train.txt")
        assert {Path(p).name for p, _, _ in test} == {c for c, (_, part) in clips.items() if part == f"fold{k}"}
        assert {Path(p).name for p, _, _ in train} == {c for c, (_, part) in clips.items() if part != f"fold{k}"}
        for path, frames, label in test + train:
            assert os.path.isabs(path) and Path(path).parent == dest.resolve()
            assert DFER_CLIP_CLASSES_7[label] == clips[Path(path).name][0]
            files = sorted(glob.glob(os.path.join(path, "*")))
            assert len(files) == frames > 0
            assert [Path(f).name for f in files] == [f"{i:05d}.jpg" for i in range(1, frames + 1)]
    # What the test loader opens: every position exists, and PIL reads it as the 224² RGB crop.
    for path, frames, _ in reference_parse(lists / "SAMPLE_set_5_train.txt"):   # every clip: fold 5 is empty
        files = sorted(glob.glob(os.path.join(path, "*")))
        for position in sorted(set(reference_test_indices(frames))):
            assert Image.open(files[position]).convert("RGB").size == (224, 224)
    assert len(reference_parse(lists / "SAMPLE_set_5_train.txt")) == len(clips)


def test_the_frames_are_the_shards_jpegs_byte_for_byte(exported):
    shards, dest = exported
    clip = next(read_shard(sorted(shards.glob("fold2-*.tar"))[0]))
    folder = dest / clip.meta["clip_id"]
    assert [(folder / f"{t + 1:05d}.jpg").read_bytes() for t in range(clip.num_frames)] == \
        [clip.frame_jpeg(t) for t in range(clip.num_frames)]
    record = json.loads((dest / "export.json").read_text())
    assert record["complete"] and record["clips"] == len(ok_clips(shards)) and record["failed_clips_not_exported"] > 0


def test_export_never_writes_into_a_folder_it_did_not_make(exported, tmp_path, capsys):
    shards, dest = exported
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert export_main([str(shards), "--dest", str(foreign), "--overwrite"]) == 1
    assert "holds no export.json" in capsys.readouterr().err and (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ExportError, match="earlier export"):
        export_frames(shards, dest, quiet=True)
    with pytest.raises(AnnotationListError, match="whitespace"):
        export_frames(shards, tmp_path / "new", path_prefix="/data/my frames", quiet=True)
    assert not (tmp_path / "new").exists()


def test_exported_lists_import_as_the_same_manifest(exported, tmp_path, capsys):
    shards, dest = exported
    manifest_path = tmp_path / "imported.csv"
    lists = sorted(str(p) for p in (dest / "annotation").glob("SAMPLE_set_*.txt"))
    assert preprocess_main(["--import-list", *lists, "--data-root", str(dest), "--manifest", str(manifest_path)]) == 0
    found = len(ok_clips(shards))
    assert f"{found} of {found} clips found" in capsys.readouterr().out
    manifest = load_manifest(manifest_path)
    assert manifest.name == "sample" and manifest.classes == DFER_CLIP_CLASSES_7
    assert manifest.partitions == tuple(f"fold{k}" for k in range(1, 6))
    frames = {clip.meta["clip_id"]: clip.num_frames for tar in shards.glob("*.tar") for clip in read_shard(tar)}
    assert {r.clip_id: (r.label, r.partition, r.frames) for r in manifest.rows} == \
        {c: (label, part, frames[c]) for c, (label, part) in ok_clips(shards).items()}
    assert all(manifest.locate(r, dest) == (dest / r.clip_id).resolve() for r in manifest.rows)


def _own_dataset(root: Path) -> list[Path]:
    """Three classes, train/val/test lists with relative and absolute paths, as a user might write them."""
    for name in ("a1", "a2", "b1", "c1", "c2"):
        (root / "frames" / name).mkdir(parents=True)
    lists = {"MINE_train.txt": [f"{root}/frames/a1 30 0", f"{root}/frames/b1 12 1"],
             "MINE_val.txt": ["frames/c1 9 2"], "MINE_test.txt": [f"{root}/frames/a2 5 0", "frames/c2 7 2"]}
    for name, lines in lists.items():
        (root / name).write_text("\n".join(lines) + "\n")
    return [root / name for name in lists]


def test_own_lists_import_with_their_classes_and_partitions(tmp_path):
    lists = _own_dataset(tmp_path)
    out = import_lists(lists, tmp_path, classes=("calm", "excited", "bored"))
    manifest = load_manifest(out)
    assert out == tmp_path / "manifest.csv" and manifest.name == "mine"
    assert manifest.classes == ("calm", "excited", "bored") and manifest.partitions == ("train", "val", "test")
    assert [(r.clip_id, r.path, r.label, r.partition, r.frames) for r in manifest.rows] == [
        ("frames/a1", "frames/a1", "calm", "train", 30), ("frames/b1", "frames/b1", "excited", "train", 12),
        ("frames/c1", "frames/c1", "bored", "val", 9), ("frames/a2", "frames/a2", "calm", "test", 5),
        ("frames/c2", "frames/c2", "bored", "test", 7)]
    assert [r.clip_id for r in load_manifest(import_lists(lists, tmp_path, tmp_path / "short.csv",
                                                          classes=("x", "y", "z"), id_parts=1)).rows][:2] == ["a1", "b1"]
    with pytest.raises(AnnotationListError, match="exists"):
        import_lists(lists, tmp_path, classes=("calm", "excited", "bored"))
    with pytest.raises(AnnotationListError, match="classes of 'mine' are unknown"):
        import_lists(lists, tmp_path, tmp_path / "m2.csv")


@pytest.mark.parametrize("line,message", [
    ("frames/a1  30 0", r"MINE_train.txt:1: expected '<path> <frames> <label index>' separated by single spaces"),
    ("frames/a1 thirty 0", r"MINE_train.txt:1: frames 'thirty' and label '0' must be integers"),
    ("frames/a1 30 3", r"MINE_train.txt:1: label index 3 is outside the 3 classes"),
    ("/elsewhere/a1 30 0", r"MINE_train.txt:1: /elsewhere/a1 is not under DATA_ROOT"),
    ("../a1 30 0", r"MINE_train.txt:1: \.\./a1 contains '\.\.'"),
    ("frames/c1 9 2", r"MINE_val.txt:1: clip 'frames/c1' is also at .*MINE_train.txt:1"),
])
def test_a_bad_list_line_is_named(tmp_path, line, message):
    lists = _own_dataset(tmp_path)
    lists[0].write_text(line + "\n")
    with pytest.raises(AnnotationListError, match=message):
        import_lists(lists, tmp_path, classes=("calm", "excited", "bored"))


def test_fold_lists_must_agree(exported, tmp_path):
    _, dest = exported
    lists = sorted((dest / "annotation").glob("SAMPLE_set_*.txt"))
    with pytest.raises(AnnotationListError, match="every fold's test list"):
        import_lists([p for p in lists if p.name != "SAMPLE_set_3_test.txt"], dest, tmp_path / "m.csv")
    broken = tmp_path / "lists"
    broken.mkdir()
    for p in lists:
        text = p.read_text()
        (broken / p.name).write_text(text.split("\n", 1)[1] if p.name == "SAMPLE_set_2_train.txt" else text)
    with pytest.raises(AnnotationListError, match="SAMPLE_set_2_train.txt: set 2's train list is not the other folds"):
        import_lists(sorted(broken.iterdir()), dest, tmp_path / "m.csv")
    with pytest.raises(AnnotationListError, match="differ from the built-in sample"):
        import_lists(lists, dest, tmp_path / "m.csv", classes=DFER_CLIP_CLASSES_7[::-1])
    with pytest.raises(ManifestError, match="unknown partition 'fold1'"):   # a built-in dataset's partitions are its own
        import_lists(lists, dest, tmp_path / "m.csv", dataset="ferv39k")
    assert not (tmp_path / "m.csv").exists()
