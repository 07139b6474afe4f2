"""Shards that any client can read: the schemas in docs/schema/ hold for real pipeline output,
every ```python recipe of docs/shard-format.md runs as written (and gives RGB frames and the
records our reader gives), and Hugging Face `datasets` types every sample alike, however
empty or incomplete the records of the first samples it looks at."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from pipeline.shards.format import (DESCRIPTION_FIELDS, DETAILS, FORMAT_VERSION, KNOWN_FIELDS, META_FIELDS,
                                   OPTIONAL_FIELDS, make_sample, unpack_record)
from pipeline.shards.reader import ShardWriter, iter_tar_members, list_shards, read_shard, shard_name

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "shard-format.md"
SCHEMAS = ROOT / "docs" / "schema"


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


def validator(document: dict, pointer: str = "") -> jsonschema.Draft202012Validator:
    """A validator for `document`, or for its part at `pointer` (`#/...`) with its $defs in reach."""
    jsonschema.Draft202012Validator.check_schema(document)
    # The part is reached through a copy of the whole document, so its own "#/$defs/..." refs resolve.
    target = document if not pointer else {"$defs": {**document.get("$defs", {}), "whole": document},
                                           "$ref": "#/$defs/whole" + pointer[1:]}
    return jsonschema.Draft202012Validator(target)


def check(valid: jsonschema.Draft202012Validator, instance, where: str) -> None:
    errors = [f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in valid.iter_errors(instance)]
    assert not errors, "\n".join(errors)


def tar_samples(folder: Path):
    """(shard path, raw members) of every sample of every shard in the folder."""
    for shard in list_shards(folder):
        for members in iter_tar_members(shard):
            yield shard, members


# --- the schemas against real output ---------------------------------------------------------

def test_pipeline_output_follows_the_json_schemas(sample_shards):
    folder, _ = sample_shards
    meta_schema, description_schema = schema("meta.schema.json"), schema("description.schema.json")
    index_schema = schema("index.schema.json")
    check(validator(index_schema), json.loads((folder / "index.json").read_text()), "index.json")
    check(validator(index_schema, "#/properties/config"), json.loads((folder / "run.json").read_text()), "run.json")
    stats, status = validator(schema("stats.schema.json")), validator(schema("status.schema.json"))
    for path in sorted(folder.glob("*.stats.json")):
        check(stats, json.loads(path.read_text()), path.name)
    lines = 0
    for path in sorted(folder.glob("*.status.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            check(status, json.loads(line), f"{path.name}:{number}")
            lines += 1
    assert lines == json.loads((folder / "index.json").read_text())["manifest"]["rows"]
    meta, meta_details = validator(meta_schema), validator(meta_schema, "#/$defs/details")
    record, record_details = validator(description_schema), validator(description_schema, "#/$defs/details")
    samples = 0
    for shard, members in tar_samples(folder):
        where = f"{shard.name} {members['__key__']}"
        stored = json.loads(members["meta.json"])
        check(meta, stored, f"{where} meta.json")
        check(meta_details, json.loads(stored[DETAILS]), f"{where} meta.json details_json")
        stored = json.loads(members["description.json"])
        check(record, stored, f"{where} description.json")
        check(record_details, json.loads(stored[DETAILS]), f"{where} description.json details_json")
        samples += 1
    assert samples == 14
    # the schemas are strict where the format is: fixed keys, fixed types
    good = json.loads(next(tar_samples(folder))[1]["meta.json"])
    assert not meta.is_valid({**good, "width": 320})
    assert not meta.is_valid({**good, "source": {**good["source"], "fps": "25"}})
    assert not meta.is_valid({k: v for k, v in good.items() if k != DETAILS})


def test_members_follow_members_json(sample_shards):
    """docs/schema/members.json names every member with its dtype and shape, and every file of the folder."""
    folder, _ = sample_shards
    spec = json.loads((SCHEMAS / "members.json").read_text())
    assert spec["format_version"] == FORMAT_VERSION
    assert set(spec["members"]) == set(KNOWN_FIELDS)
    assert {m for m, s in spec["members"].items() if not s["required"]} == set(OPTIONAL_FIELDS)
    member_sets = set()
    for shard, members in tar_samples(folder):
        names = {k for k in members if not k.startswith("__")}
        member_sets.add(frozenset(names))
        assert names <= set(spec["members"]), names - set(spec["members"])
        assert {m for m, s in spec["members"].items() if s["required"]} <= names
        meta = unpack_record(json.loads(members["meta.json"]))
        sizes = {"T": meta["num_frames"], "S": meta["crop_size"]}

        def expect(array: np.ndarray, dtype: str, shape: list, what: str) -> None:
            assert array.dtype.kind == "U" if dtype == "str" else array.dtype == np.dtype(dtype), what
            assert len(array.shape) == len(shape), what
            for size, symbol in zip(array.shape, shape):
                if isinstance(symbol, str) and symbol not in sizes and symbol != "T+1":
                    sizes[symbol] = size     # K: bound by the first array that has it
                wanted = sizes["T"] + 1 if symbol == "T+1" else sizes.get(symbol, symbol)
                assert size == wanted, f"{what}: {array.shape} against {shape}"

        for name in names:
            entry, data = spec["members"][name], members[name]
            what = f"{shard.name} {members['__key__']}.{name}"
            if entry["encoding"] == "npy":
                expect(np.load(io.BytesIO(data), allow_pickle=False), entry["dtype"], entry["shape"], what)
            elif entry["encoding"] == "npz":
                with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                    assert set(npz.files) == set(entry["arrays"]), what
                    for array_name, array_spec in entry["arrays"].items():
                        expect(npz[array_name], array_spec["dtype"], array_spec["shape"], f"{what}[{array_name}]")
            elif entry["encoding"] == "mjpeg":
                import cv2

                offsets = np.load(io.BytesIO(members["frames_offsets.npy"]))
                assert offsets[0] == 0 and offsets[-1] == len(data), what
                for t in range(sizes["T"]):
                    frame = cv2.imdecode(np.frombuffer(data[offsets[t]:offsets[t + 1]], np.uint8), cv2.IMREAD_COLOR)
                    assert frame.shape == (sizes["S"], sizes["S"], 3), what
            elif entry["encoding"] == "utf-8":
                data.decode("utf-8")
            for partner in entry.get("with", []):
                assert partner in names, f"{what} comes with {partner}"
    assert len(member_sets) == 1, "every sample of a dataset folder has the same members"
    patterns = {re.compile("^" + re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(p)) + "$"): p for p in spec["folder"]}
    files = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
    for name in files:
        assert any(pattern.match(name) for pattern in patterns), f"{name} is not in members.json's folder"
    for pattern, text in patterns.items():
        assert any(pattern.match(name) for name in files), f"no file {text}"


def test_the_doc_names_every_member_and_schema():
    text = DOC.read_text()
    for name in KNOWN_FIELDS:
        assert f"`{name}`" in text, name
    for path in SCHEMAS.iterdir():
        assert f"(schema/{path.name})" in text, path.name
    for key in [*META_FIELDS, *DESCRIPTION_FIELDS, DETAILS]:
        assert f"`{key}`" in text, key


# --- the recipes of docs/shard-format.md -----------------------------------------------------

def python_blocks() -> list[str]:
    return [code for _, code in recipes()]


def recipes() -> list[tuple[str, str]]:
    """(a test id from the section heading, code) for every ```python block of the doc."""
    found, heading = [], "top"
    for part in re.split(r"^(```python\n.*?^```)", DOC.read_text(), flags=re.S | re.M):
        if part.startswith("```python"):
            number = sum(name.startswith(heading) for name, _ in found)
            found.append((heading + (f"-{number + 1}" if number else ""), part[len("```python\n"):-3]))
        else:
            titles = re.findall(r"^#+ (.+)$", part, flags=re.M)
            if titles:
                heading = re.sub(r"[^a-z0-9]+", "-", titles[-1].lower()).strip("-")
    return found


# Checks run after the recipe that contains the marker, in the same interpreter, on its variables.
AFTER = {
    "def full_record": """
from pipeline.shards.format import unpack_record
from pipeline.shards.reader import iter_tar_members, list_shards
for shard in list_shards("shards/sample"):
    for members in iter_tar_members(shard):
        for name in ("meta.json", "description.json"):
            stored = json.loads(members[name])
            assert full_record(stored) == unpack_record(stored), (shard, name)
""",
    "in_source": """
assert in_source.shape == (clip.num_frames, 68, 2)
width, height = clip.meta["source"]["width"], clip.meta["source"]["height"]
assert (0 < in_source[..., 0]).all() and (in_source[..., 0] < width).all(), "landmarks inside the source frame"
assert (0 < in_source[..., 1]).all() and (in_source[..., 1] < height).all()
""",
    "class Clips(IterableDataset)": """
assert batch["frames"].dtype == torch.float32 and tuple(batch["frames"].shape[1:3]) == (NUM_FRAMES, 3)
assert batch["landmarks"].shape[1:] == (NUM_FRAMES, 68, 2)
assert all(0 <= label < len(CLASSES) for label in batch["label"].tolist())
""",
    ".decode():": """
from pipeline.shards.reader import read_shard
ours = {c.key: c for s in shards for c in read_shard(s)}
assert np.array_equal(frame3, ours[sample["__key__"]].frames([3])[0]), "RGB, as our reader gives"
assert np.array_equal(sample["landmarks.npy"], ours[sample["__key__"]].landmarks)
""",
    "tarfile.open": """
from pipeline.shards.format import unpack_record
from pipeline.shards.reader import read_shard
clip = next(c for c in read_shard("shards/sample/fold1-000000.tar") if c.key == key)
assert np.array_equal(frame7, clip.frames([7])[0]), "RGB, as our reader gives"
assert np.array_equal(landmarks, clip.landmarks) and np.array_equal(masks, clip.masks())
assert unpack_record(meta) == clip.meta
""",
    "load_dataset": """
from pipeline.shards.format import unpack_record
from pipeline.shards.reader import read_shard
clip = next(c for c in read_shard(row["__url__"]) if c.key == row["__key__"])
assert np.array_equal(frame0, clip.frames([0])[0]), "RGB, as our reader gives"
assert np.array_equal(landmarks, clip.landmarks) and np.array_equal(masks, clip.masks())
assert np.array_equal(timestamps, clip.timestamps)
assert unpack_record(meta) == clip.meta and unpack_record(row["description.json"]) == clip.description_record
assert len(ds["train"]) + len(ds["test"]) == index["ok"]
""",
}


@pytest.fixture(scope="module")
def recipe_dir(sample_shards, tmp_path_factory):
    """A working directory where `shards/sample` is the session's real pipeline output."""
    folder, _ = sample_shards
    work = tmp_path_factory.mktemp("recipes")
    (work / "shards").mkdir()
    (work / "shards" / "sample").symlink_to(folder, target_is_directory=True)
    return work


def test_every_check_belongs_to_one_recipe():
    blocks = python_blocks()
    assert len(blocks) >= 7
    for marker in AFTER:
        assert sum(marker in block for block in blocks) == 1, marker


@pytest.mark.parametrize("number", range(len(recipes())), ids=[name for name, _ in recipes()])
def test_doc_recipe_runs_as_written(number, recipe_dir):
    block = recipes()[number][1]
    checks = "".join(code for marker, code in AFTER.items() if marker in block)
    script = recipe_dir / f"recipe_{number}.py"
    script.write_text(block + "\n# --- checks added by tests/test_shard_clients.py ---\n" + checks)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(recipe_dir / "hf-cache"), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    done = subprocess.run([sys.executable, script.name], cwd=recipe_dir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"recipe {number}:\n{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.stdout.strip(), "a recipe shows what it read"


# --- Hugging Face datasets -------------------------------------------------------------------

CLASSES = ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")


def event(action: str, offset: int | None) -> dict:
    return {"action": action, "signal": action, "onset": 1, "apex": 2, "offset": offset, "onset_s": 0.04,
            "apex_s": 0.08, "offset_s": None if offset is None else offset / 25, "peak": 0.5, "degree": "clear",
            "speed": "quick", "ending": "hold" if offset is None else "return"}


def varied_sample(i: int):
    """Sample i: the first six have empty lists and lack the optional keys; later ones fill them."""
    n = 3 + i % 3
    rich = i >= 6
    source = {"path": f"clips/c{i}.mp4", "fps": 30 if i % 2 else 25.0, "frames": 40 + i}  # an int fps becomes float
    if i == 0:
        del source["path"]                                     # a writer that was not told the path
    meta = {"dataset": "mafw", "clip_id": f"dir/c{i}", "label": CLASSES[i % 7], "partition": "fold1",
            "source": source}
    if rich:
        source.update(kind="frames", width=320, height=240, skipped_images=["000003.jpg"], scale=0.5)
        meta["quality"] = {"face_frames": n, "mean_detector_score": 0.9}
        meta["annotation"] = {"votes": [3, 1, 0], "annotators": None}
    record = {"backend": "geometric", "version": 1, "events": [], "blinks": [], "removed": [],
              "raw_text": f"raw {i}", "text": f"text {i}"}
    if rich:
        record.update(events=[event("jaw_drop", None), event("brow_lower", 4)], blinks=[event("blink", 3)],
                      removed=["She looks happy."])
    if i == 8:   # another describer altogether
        record = {"backend": "videollava", "model": "LanguageBind/Video-LLaVA-7B-hf", "revision": None,
                  "generation": {"num_beams": 1}, "frame_indices": [0, 2], "filter_removed": ["Angry."],
                  "raw_text": "raw", "text": "text"}
    rng = np.random.default_rng(i)
    sample = make_sample(
        key=f"dir_c{i}", meta=meta, frames=rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
        timestamps=np.arange(n) / 25 + 1e-9 * i, boxes=rng.uniform(0, 100, (n, 4)),
        face_detected=np.arange(n) % 2 == 0, landmarks=rng.uniform(0, 16, (n, 68, 2)),
        landmarks_conf=rng.uniform(0, 1, n), masks=rng.integers(0, 19, (n, 16, 16), dtype=np.uint8),
        description=f"text {i}", description_record=record)
    sample.au, sample.au_names = rng.uniform(0, 1, (n, 2)).astype(np.float32), ["jaw_drop", "blink"]
    return sample


def feature_types(features) -> object:
    """datasets Features -> nested dicts of dtype names, for comparison."""
    if isinstance(features, dict):
        return {k: feature_types(v) for k, v in features.items()}
    return getattr(features, "dtype", type(features).__name__)


def typed(fields: dict, top: bool = True) -> dict:
    """The column types a record of `fields` must get: its typed keys and the details string."""
    names = {int: "int64", float: "float64", str: "string"}
    types = {k: typed(v, top=False) if isinstance(v, dict) else names[v] for k, v in fields.items()}
    return types | ({DETAILS: "string"} if top else {})


def load_hf(files: list[Path], cache: Path):
    import datasets

    datasets.disable_progress_bars()
    return datasets.load_dataset("webdataset", data_files={"train": [str(f) for f in files]}, split="train",
                                 cache_dir=str(cache))


def test_hf_types_do_not_depend_on_the_first_samples(tmp_path):
    samples = [varied_sample(i) for i in range(9)]
    files = [tmp_path / shard_name("fold1", 0), tmp_path / shard_name("fold1", 1)]
    for path, part in zip(files, (samples[:7], samples[7:])):
        with ShardWriter(path) as writer:
            for sample in part:
                writer.write(sample)
    ds = load_hf(files, tmp_path / "hf-cache")
    assert len(ds) == 9
    assert feature_types(ds.features["meta.json"]) == typed(META_FIELDS)
    assert feature_types(ds.features["description.json"]) == typed(DESCRIPTION_FIELDS)
    ours = {clip.key: clip for path in files for clip in read_shard(path)}
    for row, sample in zip(ds, samples):
        clip = ours[row["__key__"]]
        assert row["__key__"] == sample.key
        expected = {**sample.meta, "format_version": FORMAT_VERSION, "num_frames": sample.num_frames}
        assert unpack_record(row["meta.json"]) == expected == clip.meta
        assert unpack_record(row["description.json"]) == sample.description_record == clip.description_record
        assert isinstance(row["meta.json"]["source"]["fps"], float)
        assert row["meta.json"]["source"]["path"] == sample.meta["source"].get("path", "")
        assert row["description.txt"] == sample.description
        for name in ("timestamps", "boxes", "face_detected", "landmarks", "landmarks_conf"):
            array = getattr(sample, name)
            assert np.array_equal(np.asarray(row[f"{name}.npy"], array.dtype), array), name
        assert np.array_equal(np.asarray(row["masks.npz"]["masks"], np.uint8), sample.masks())
        assert np.allclose(row["au.npz"]["signals"], sample.au) and row["au.npz"]["names"] == sample.au_names
        offsets = row["frames_offsets.npy"]
        assert row["frames.mjpeg"][offsets[1]:offsets[2]] == sample.frame_jpeg(1)
    rich = unpack_record(ds[8 - 2]["description.json"])
    assert rich["events"][0]["offset"] is None and rich["events"][1]["offset"] == 4 and rich["removed"]


def test_real_pipeline_shards_load_with_hf(sample_shards, tmp_path):
    folder, index = sample_shards
    files = [folder / f"{s['name']}.tar" for s in index["shards"] if s["ok"]]
    ds = load_hf(files, tmp_path / "hf-cache")
    assert len(ds) == index["ok"] == 14
    assert feature_types(ds.features["meta.json"]) == typed(META_FIELDS)
    ours = {clip.key: clip for path in files for clip in read_shard(path)}
    for number, row in enumerate(ds):
        clip = ours[row["__key__"]]
        assert unpack_record(row["meta.json"]) == clip.meta
        assert unpack_record(row["description.json"]) == clip.description_record
        assert np.array_equal(np.asarray(row["landmarks.npy"], np.float32), clip.landmarks)
        assert np.array_equal(np.asarray(row["boxes.npy"], np.float32), clip.boxes)
        assert row["au.npz"]["names"] == clip.au_names
        if number == 0:
            assert np.array_equal(np.asarray(row["masks.npz"]["masks"], np.uint8), clip.masks())
