"""Built-in manifests hold the published counts; every kind of bad row gets a precise error."""

import os
from collections import Counter

import pytest

from pipeline.inputs.datasets import DATASETS
from pipeline.inputs.manifest import ClipPathError, ManifestError, load_manifest, sample_key, write_manifest
from pipeline.preprocess import main as preprocess_main


def per_partition(manifest):
    return {p: sum(c.values()) for p, c in manifest.counts().items()}


def test_mafw_totals_folds_and_classes():
    m = load_manifest("mafw")
    assert len(m) == 9172
    assert m.classes == DATASETS["mafw"].classes and len(m.classes) == 11
    assert per_partition(m) == {"fold1": 1839, "fold2": 1837, "fold3": 1833, "fold4": 1832, "fold5": 1831}
    totals = Counter(r.label for r in m.rows)
    assert totals == {"anger": 1390, "disgust": 639, "fear": 625, "happiness": 1242, "neutral": 1138,
                      "sadness": 1470, "surprise": 1072, "contempt": 236, "anxiety": 916,
                      "helplessness": 262, "disappointment": 182}
    row = next(r for r in m.rows if r.clip_id == "03747")
    assert row.path == "data/clips/03747.mp4" and row.key == "03747"


def test_dfew_totals_and_folds():
    m = load_manifest("dfew")
    assert len(m) == 11697 and len(m.classes) == 7
    assert per_partition(m) == {"fold1": 2341, "fold2": 2341, "fold3": 2340, "fold4": 2339, "fold5": 2336}
    # train of fold k = the other four test folds, as in the reference train lists
    assert len(m) - per_partition(m)["fold1"] == 9356
    assert all(9 <= r.frames <= 1000 for r in m.rows)


def test_ferv39k_totals_and_clip_ids():
    m = load_manifest("ferv39k")
    assert len(m) == 38935
    assert per_partition(m) == {"train": 31088, "test": 7847}
    scenes = {r.clip_id.split("/")[0] for r in m.rows}
    assert len(scenes) == 22
    row = m.rows[0]
    assert row.path == f"2_ClipsforFaceCrop/{row.clip_id}" and "." not in row.key and "/" not in row.key


def write(tmp_path, body, header="# dataset: mafw\n"):
    path = tmp_path / "bad.csv"
    path.write_text(header + "clip_id,path,label,partition,frames\n" + body)
    return path


GOOD = "00001,data/clips/00001.mp4,anger,fold1,30\n"


@pytest.mark.parametrize("body, message", [
    ("00002,data/clips/00002.mp4,angry,fold1,30\n", "line 4: unknown class 'angry'"),
    ("00001,data/clips/x.mp4,anger,fold2,30\n", "line 4: duplicate clip id '00001' (first on line 3)"),
    ("00002,data/clips/00002.mp4,anger,fold6,30\n", "line 4: unknown partition 'fold6'"),
    ("00002,/etc/passwd,anger,fold1,30\n", "line 4: path '/etc/passwd' is absolute"),
    ("00002,data/../../secret.mp4,anger,fold1,30\n", "would escape DATA_ROOT"),
    ("00002,C:\\clips\\2.mp4,anger,fold1,30\n", "no drive letter"),
    ("00002,,anger,fold1,30\n", "line 4: empty path"),
    ("00002,data/clips/00002.mp4,anger,fold1\n", "line 4: 4 fields, expected 5"),
    ("00002,data/clips/00002.mp4,anger,fold1,-3\n", "line 4: frames '-3' is not a positive integer"),
    ("../x,data/clips/00002.mp4,anger,fold1,30\n", "line 4: clip id '../x'"),
    ("a.b,a.mp4,anger,fold1,3\na_b,b.mp4,anger,fold1,3\n", "line 5: clip id 'a_b' gives the same sample key 'a_b'"),
])
def test_each_bad_row_kind_names_file_line_and_problem(tmp_path, body, message):
    path = write(tmp_path, GOOD + body)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_all_problems_reported_at_once(tmp_path):
    path = write(tmp_path, GOOD + "00002,x.mp4,angry,fold1,\n00003,x.mp4,anger,fold9,\n")
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert len(err.value.problems) == 2


# One manifest holding every kind of bad row (after a good one): a single ManifestError names
# each, by line. (A missing column or an unusable header stops before the rows: tested below.)
EVERY_BAD_ROW = [
    ("00002,data/clips/00002.mp4,angry,fold1,30", "line 4: unknown class 'angry'"),
    ("00001,data/clips/x.mp4,anger,fold2,30", "line 5: duplicate clip id '00001' (first on line 3)"),
    ("00003,data/clips/00003.mp4,anger,fold6,30", "line 6: unknown partition 'fold6'"),
    ("00004,/etc/passwd,anger,fold1,30", "line 7: path '/etc/passwd' is absolute"),
    ("00005,data/../../secret.mp4,anger,fold1,30", "line 8: path 'data/../../secret.mp4' contains '..'"),
    ("00006,C:\\clips\\6.mp4,anger,fold1,30", "line 9: path 'C:\\\\clips\\\\6.mp4' use forward slashes"),
    ("00007,,anger,fold1,30", "line 10: empty path"),
    (",data/clips/00008.mp4,anger,fold1,30", "line 11: empty clip_id"),
    ("00009,data/clips/00009.mp4,,fold1,30", "line 12: empty label"),
    ("00010,data/clips/00010.mp4,anger,,30", "line 13: empty partition"),
    ("00011,data/clips/00011.mp4,anger,fold1", "line 14: 4 fields, expected 5"),
    ("00012,data/clips/00012.mp4,anger,fold1,30,extra", "line 15: 6 fields, expected 5"),
    ("00013,data/clips/00013.mp4,anger,fold1,-3", "line 16: frames '-3' is not a positive integer"),
    ("00014,data/clips/00014.mp4,anger,fold1,0", "line 17: frames '0' is not a positive integer"),
    ("00015,data/clips/00015.mp4,anger,fold1,many", "line 18: frames 'many' is not a positive integer"),
    ("../x,data/clips/00016.mp4,anger,fold1,30", "line 19: clip id '../x' may hold only"),
    ("a b,data/clips/00017.mp4,anger,fold1,30", "line 20: clip id 'a b' may hold only"),
    ("a.b,a.mp4,anger,fold1,3", None),  # fine on its own; its key collides with the next row's
    ("a_b,b.mp4,anger,fold1,3", "line 22: clip id 'a_b' gives the same sample key 'a_b' as 'a.b' on line 21"),
]


def test_one_manifest_with_every_kind_of_bad_row_lists_each(tmp_path):
    path = write(tmp_path, GOOD + "".join(row + "\n" for row, _ in EVERY_BAD_ROW))
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    expected = [message for _, message in EVERY_BAD_ROW if message]
    assert len(err.value.problems) == len(expected), "\n".join(err.value.problems)
    for problem, message in zip(err.value.problems, expected):
        assert problem.startswith(message), (problem, message)
    assert str(err.value).startswith(f"{path}: {len(expected)} problem(s):")


def test_locate_refuses_a_dotdot_path_even_when_nothing_is_there(tmp_path):
    """load_manifest refuses '..'; a row made by hand is refused again when it is located."""
    import dataclasses

    m = load_manifest("mafw")
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.mp4").write_bytes(b"\0")
    for rel in ("../outside.mp4", "../nothing_here.mp4", "data/../../outside.mp4"):
        row = dataclasses.replace(m.rows[0], path=rel)
        with pytest.raises(ClipPathError) as err:
            m.locate(row, root)
        assert err.value.reason == "path_outside_root", rel
        assert rel in str(err.value) and str(root.resolve()) in str(err.value)


def test_bad_header_and_missing_columns(tmp_path):
    path = tmp_path / "cols.csv"
    path.write_text("# dataset: mafw\nclip,file,label\n1,a.mp4,anger\n")
    with pytest.raises(ManifestError, match="lacks clip_id, path, partition"):
        load_manifest(path)
    path.write_text("clip_id,path,label,partition\n1,a.mp4,anger,train\n")
    with pytest.raises(ManifestError, match="needs a '# classes: a, b, c' line"):
        load_manifest(path)
    with pytest.raises(ManifestError, match="file not found"):
        load_manifest(tmp_path / "nope.csv")
    with pytest.raises(KeyError, match="built-in datasets are"):
        load_manifest("mafwx")


def test_users_own_manifest_round_trips(tmp_path):
    rows = [dict(clip_id=f"s{i}/v{i}", path=f"videos/v{i}.avi", label=("calm", "excited")[i % 2],
                 partition=("train", "test")[i % 3 == 0], frames=None) for i in range(6)]
    path = tmp_path / "mine.csv"
    write_manifest(path, rows, classes=("calm", "excited"))
    m = load_manifest(str(path))
    assert m.name == "mine" and m.classes == ("calm", "excited")
    assert m.partitions == ("test", "train")
    assert [r.clip_id for r in m.rows] == [r["clip_id"] for r in rows]
    assert m.rows[1].key == "s1_v1" and m.rows[1].frames is None
    assert m.class_index("excited") == 1


def test_locate_tries_the_dataset_layouts(tmp_path):
    m = load_manifest("mafw")
    row = next(r for r in m.rows if r.clip_id == "03747")
    root = tmp_path / "MAFW"
    with pytest.raises(ClipPathError) as err:
        m.locate(row, root)
    assert err.value.reason == "missing_file"
    assert "data/clips/03747.mp4" in str(err.value) and "data/faces/03747" in str(err.value)
    (root / "data/faces/03747").mkdir(parents=True)
    assert m.locate(row, root) == (root / "data/faces/03747").resolve()
    (root / "data/clips").mkdir(parents=True)
    (root / "data/clips/03747.mp4").write_bytes(b"\0")
    assert m.locate(row, root).name == "03747.mp4"


def test_symlink_out_of_data_root_is_refused(tmp_path):
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"\0")
    root = tmp_path / "root"
    (root / "data/clips").mkdir(parents=True)
    os.symlink(outside, root / "data/clips/00019.mp4")
    m = load_manifest("mafw")
    row = next(r for r in m.rows if r.clip_id == "00019")
    with pytest.raises(ClipPathError) as err:
        m.locate(row, root)
    assert err.value.reason == "path_outside_root"


def test_cli_summarises_and_counts_found_clips(tmp_path, capsys):
    root = tmp_path / "MAFW"
    (root / "data/clips").mkdir(parents=True)
    for clip_id in ("00019", "00020"):
        (root / f"data/clips/{clip_id}.mp4").write_bytes(b"\0")
    assert preprocess_main(["mafw", "--data-root", str(root), "--check"]) == 0
    out = capsys.readouterr().out
    assert "mafw: 9172 clips, 11 classes" in out
    assert "2 of 9172 clips found" in out and "9170  missing_file" in out
    assert preprocess_main([str(write(tmp_path, GOOD + "x,y,zzz,fold1,1\n")), "--check"]) == 1
    assert "unknown class 'zzz'" in capsys.readouterr().err


def test_sample_key_is_dot_free():
    assert sample_key("Action/Happy/0267") == "Action_Happy_0267"
    assert sample_key("clip.v2") == "clip_v2"
