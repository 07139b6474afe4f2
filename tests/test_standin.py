"""Stand-in datasets (pipeline/sample/standin.py) against the built-in manifests, a real run over
one, and the progress report's two forms (pipeline/run/progress.py)."""

import io
import json
import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.inputs.datasets import DATASETS
from pipeline.inputs.manifest import load_manifest, presence
from pipeline.run.progress import ProgressBar
from pipeline.sample.standin import LAYOUTS, build_standin, stratified_rows


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """Two sequences of 224-px JPEGs (3 frames and 1), on the file system the stand-ins are built on."""
    root = tmp_path_factory.mktemp("pool")
    rng = np.random.default_rng(0)
    sequences = []
    for k, frames in enumerate((3, 1)):
        paths = []
        for t in range(frames):
            path = root / f"s{k}_{t}.jpg"
            cv2.imwrite(str(path), rng.integers(0, 255, (224, 224, 3), dtype=np.uint8))
            paths.append(path)
        sequences.append(paths)
    return sequences


@pytest.mark.parametrize("dataset", sorted(LAYOUTS))
def test_the_standin_has_the_manifests_clips_folders_and_frame_counts(dataset, pool, tmp_path):
    out = tmp_path / dataset
    record = build_standin(dataset, out, clips=16, pool=pool, quiet=True)
    builtin = {row.clip_id: row for row in load_manifest(dataset).rows}
    subset = load_manifest(out / "manifest.csv")
    assert subset.name == dataset and len(subset) == record["clips"] == 16
    assert LAYOUTS[dataset].folder in DATASETS[dataset].official_crops    # a layout --crop official reads
    pool_files = {p for seq in pool for p in seq}
    for row in subset.rows:
        real = builtin[row.clip_id]
        assert (row.path, row.label, row.partition, row.frames) == (real.path, real.label, real.partition, real.frames)
        folder = subset.locate(row, out, crop="official")
        assert folder == (out / LAYOUTS[dataset].folder.format(clip_id=row.clip_id)).resolve()
        images = sorted(folder.iterdir())
        assert len(images) == real.frames
        assert all(any(os.path.samefile(image, p) for p in pool_files) for image in images[:5])   # hard links
    assert f"16 of 16 clips found as the dataset's own face crops" in presence(subset, out, "official")
    # Built again: every clip folder is reused as it is.
    assert build_standin(dataset, out, clips=16, pool=pool, quiet=True)["clip_folders_written"] == 0


def test_a_subset_is_stratified_by_partition_and_class():
    manifest = load_manifest("ferv39k")
    rows = stratified_rows(manifest, 1000)
    assert len(rows) == len({r.clip_id for r in rows}) == 1000
    assert [r.line for r in rows] == sorted(r.line for r in rows)       # manifest order
    whole = Counter((r.partition, r.label) for r in manifest.rows)
    taken = Counter((r.partition, r.label) for r in rows)
    assert set(taken) == set(whole)
    for stratum, n in whole.items():
        assert abs(taken[stratum] - 1000 * n / len(manifest)) <= 1, stratum
    assert len({r.clip_id.split("/")[0] for r in rows}) == len({r.clip_id.split("/")[0] for r in manifest.rows})


def test_a_real_run_over_a_standin_reads_every_frame_and_logs_a_line_per_shard_at_most(pool, tmp_path, capsys):
    from pipeline.preprocess import preprocess
    from pipeline.shards.reader import ShardReader

    root = tmp_path / "standin"
    build_standin("ferv39k", root, clips=6, pool=pool, quiet=True)
    capsys.readouterr()
    index = preprocess(str(root / "manifest.csv"), root, tmp_path / "out", profile="cpu", workers=2, shard_size=2,
                       progress=True)   # stderr is captured here: no terminal, so the line form
    captured = capsys.readouterr()
    manifest = load_manifest(root / "manifest.csv")
    assert index["ok"] == 6 and index["complete"]
    frames = {clip.meta["clip_id"]: clip.num_frames for clip in ShardReader(tmp_path / "out")}
    assert frames == {row.clip_id: row.frames for row in manifest.rows}
    lines = (captured.out + captured.err).splitlines()
    shards = len(index["shards"])
    progress = [line for line in lines if "preprocess: " in line and " clips (" in line]
    assert 1 <= len(progress) <= shards and "6/6 clips (100.0 %), 0 failed" in progress[-1]
    assert len(lines) <= shards + 10, "\n".join(lines)
    assert "\r" not in captured.err


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_without_a_terminal_is_a_line_a_minute_at_most():
    clock, stream = Clock(), io.StringIO()
    bar = ProgressBar(6400, enabled=True, shards=100, stream=stream, clock=clock)
    for shard in range(100):
        clock.now += 5.0                               # a shard every 5 s: 500 s in all
        bar.update(63, 1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert 9 <= len(lines) <= 10                       # the first, one a minute, the last
    assert "6,400/6,400 clips (100.0 %), 100 failed, 12.80 clips/s, done (100/100 shards)" in lines[-1]
    assert "left" in lines[0] and "64/6,400" in lines[0]

    clock, stream = Clock(), io.StringIO()
    bar = ProgressBar(640, enabled=True, shards=10, stream=stream, clock=clock)
    for shard in range(10):                            # fast shards: the first line and the last
        clock.now += 0.1
        bar.update(64, 0)
    bar.close()
    assert len(stream.getvalue().splitlines()) == 2


def test_progress_on_a_terminal_is_one_redrawn_bar_with_rate_eta_and_failures():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = ProgressBar(128, enabled=True, shards=2, stream=stream)
    bar.update(60, 4)
    bar.update(64, 0)
    bar.close()
    text = stream.getvalue()
    assert "128/128" in text and "failed=4" in text and "clip/s" in text and "\r" in text
    assert ProgressBar(128, enabled=False, stream=Terminal()).bar is None
