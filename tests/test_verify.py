"""`make verify`: a dataset folder checked against its manifest, index and stats — whole, and damaged."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.verify import verify_folder

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def folder(sample_shards, tmp_path):
    """A private copy of the preprocessed sample dataset, free to damage."""
    out, _ = sample_shards
    return Path(shutil.copytree(out, tmp_path / "sample"))


def fullest_shard(folder: Path) -> str:
    """The name of the shard holding the most samples."""
    stats = [json.loads(p.read_text()) for p in folder.glob("*.stats.json")]
    return max(stats, key=lambda s: (s["ok"], s["name"]))["name"]


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def problems_about(report, file_name: str, *words: str) -> list[str]:
    return [p for p in report.problems if p.startswith(file_name) and all(w in p for w in words)]


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.verify", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_the_sample_dataset_passes(folder, sample_shards):
    _, index = sample_shards
    report = verify_folder(folder)
    assert report.ok, report.render()
    assert report.problems == [] and report.warnings == []
    assert (report.shards, report.samples) == (len(index["shards"]), index["ok"])
    assert report.manifest_rows == index["manifest"]["rows"]
    assert report.verdict() == f"verify: OK ({report.shards} shards, {index['ok']} samples, " \
                               f"{index['manifest']['rows']} manifest rows)"


def test_deep_decodes_every_sample_and_passes(folder, sample_shards):
    report = verify_folder(folder, deep=True)
    assert report.ok, report.render()
    assert report.samples == sample_shards[1]["ok"]


def test_a_deleted_tar_is_named(folder):
    name = fullest_shard(folder)
    (folder / f"{name}.tar").unlink()
    report = verify_folder(folder)
    assert not report.ok
    assert problems_about(report, f"{name}.tar", "missing"), report.render()


@pytest.mark.parametrize("change, words", [
    ({"ok": 99}, ["ok 99", ".status.jsonl gives"]),
    ({"sha256": "0" * 64}, ["sha256", "differs"]),
    ({"bytes": 12345}, ["bytes"]),
])
def test_edited_stats_are_caught(folder, change, words):
    name = fullest_shard(folder)
    edit_json(folder / f"{name}.stats.json", **change)
    report = verify_folder(folder)
    assert not report.ok
    assert [p for p in report.problems if p.startswith(name) and all(w in p for w in words)], report.render()
    # index.json was built from the old stats: its shard entry no longer agrees either
    assert problems_about(report, "index.json", f"shard {name}", next(iter(change))), report.render()


def test_a_truncated_tar_is_reported_as_such(folder):
    name = fullest_shard(folder)
    tar = folder / f"{name}.tar"
    size = tar.stat().st_size
    with open(tar, "r+b") as f:
        f.truncate(size // 2)
    report = verify_folder(folder)
    assert not report.ok
    assert problems_about(report, f"{name}.tar", "truncated"), report.render()
    assert problems_about(report, f"{name}.tar", f"{size // 2} bytes", f"says {size}"), report.render()
    assert problems_about(report, f"{name}.tar", "lacks ok clips"), report.render()


def test_a_tar_cut_between_members_is_still_truncated(folder):
    """tarfile reads a tar cut at a header boundary as a clean, shorter archive; verify must not."""
    name = fullest_shard(folder)
    tar = folder / f"{name}.tar"
    with open(tar, "r+b") as f:
        f.truncate(1536)  # the first member's header and data, then nothing
    report = verify_folder(folder)
    assert problems_about(report, f"{name}.tar", "truncated: no end-of-archive marker"), report.render()


def test_a_duplicated_status_row_is_named_with_its_shard(folder):
    name = fullest_shard(folder)
    status = folder / f"{name}.status.jsonl"
    lines = status.read_text().splitlines()
    clip = json.loads(lines[0])["clip_id"]
    status.write_text("\n".join(lines + [lines[0]]) + "\n")
    report = verify_folder(folder)
    assert not report.ok
    assert problems_about(report, f"{name}.status.jsonl", f"clip {clip} has 2 status rows"), report.render()


def test_a_manifest_row_in_no_status_file_is_named(folder, sample_shards):
    name = fullest_shard(folder)
    status = folder / f"{name}.status.jsonl"
    lines = status.read_text().splitlines()
    clip = json.loads(lines[0])["clip_id"]
    status.write_text("\n".join(lines[1:]) + "\n")
    report = verify_folder(folder)
    manifest = sample_shards[1]["manifest"]["path"]
    assert problems_about(report, manifest, "in no status file", f"shard {name}", clip), report.render()
    # and its sample is now in the tar without an ok status row
    assert problems_about(report, f"{name}.tar", "not ok", clip), report.render()


def test_a_changed_manifest_is_reported(folder, sample_shards, tmp_path):
    manifest = tmp_path / "manifest.csv"
    original = Path(sample_shards[1]["manifest"]["path"]).read_text()
    manifest.write_text(original + "# edited after preprocessing\n")
    report = verify_folder(folder, manifest=manifest)
    assert problems_about(report, str(manifest), "changed since preprocessing"), report.render()
    assert len(report.problems) == 1  # the rows themselves are all still accounted for


def test_a_missing_manifest_and_index_are_reported(folder, tmp_path):
    report = verify_folder(folder, manifest=tmp_path / "nowhere.csv")
    assert problems_about(report, str(tmp_path / "nowhere.csv"), "manifest not found"), report.render()
    (folder / "index.json").unlink()
    assert problems_about(verify_folder(folder), "index.json", "missing")


def test_leftovers_are_warnings_unless_strict(folder):
    (folder / "fold1-000000.tar.tmp").write_bytes(b"partial")
    (folder / ".work" / "run1").mkdir(parents=True)
    (folder / ".work" / "run1" / "fold1-000000.tar").write_bytes(b"partial")
    report = verify_folder(folder)
    assert report.ok and not report.passed(strict=True)
    assert any(w.startswith("fold1-000000.tar.tmp") for w in report.warnings)
    assert any(w.startswith(".work/") for w in report.warnings)
    assert report.verdict(strict=True) == "verify: FAILED — 2 problems"


def test_cli_exit_codes_and_last_line(folder, tmp_path):
    good = run_cli(folder)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.strip().splitlines()[-1].startswith("verify: OK (")

    (folder / f"{fullest_shard(folder)}.tar").unlink()
    bad = run_cli(folder)
    assert bad.returncode == 1
    last = bad.stdout.strip().splitlines()[-1]
    assert last.startswith("verify: FAILED — ") and last.endswith("problems")

    missing = run_cli(tmp_path / "no-such-folder")
    assert missing.returncode == 2 and "not a folder" in missing.stderr
