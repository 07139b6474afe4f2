"""The toolkit as a library: `pip install .` in a clean venv gives the shard reader, without torch,
and the README's reader block runs there as written against real pipeline shards."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The clean venv must import its own installed copy, never a checkout named by PYTHONPATH.
CLEAN_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def readme_reader_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Reading the shards in your own code", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory) -> Path:
    """A venv with nothing but `pip install .` of a copy of the project (the files a wheel is built from)."""
    base = tmp_path_factory.mktemp("library")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("pipeline", "trainer", "prompts", "manifests"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(source)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    return venv


def test_readme_reader_block_runs_in_a_clean_install_without_torch(clean_venv, sample_shards, tmp_path):
    shards, index = sample_shards
    python = str(clean_venv / "bin" / "python")
    for module in ("torch", "ray", "dlib", "av", "transformers"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, env=CLEAN_ENV)
        assert probe.returncode != 0, f"{module} was installed by `pip install .`"
    # The block's paths are relative to the repository root, where `make preprocess` writes shards/sample.
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "sample").symlink_to(shards)
    ran = subprocess.run([python, "-c", readme_reader_block()], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env=CLEAN_ENV)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.strip().splitlines()
    fold1 = [row for row in _status_rows(shards, "fold1") if row["status"] == "ok"]
    assert len(lines) == len(fold1) > 0
    assert all("(3, 224, 224, 3) (" in line for line in lines), lines[:3]


def test_installed_copy_finds_its_prompts_and_manifests(clean_venv, tmp_path):
    code = ("import pipeline.resources as r, pipeline.inputs.datasets as d\n"
            "assert 'site-packages' in str(r.PROMPTS_DIR), r.PROMPTS_DIR\n"
            "assert (r.PROMPTS_DIR / 'emotion_lexicon.txt').is_file()\n"
            "assert d.DATASETS['mafw'].manifest_path().is_file()\n"
            "print(sum(1 for _ in open(d.DATASETS['dfew'].manifest_path())))")
    ran = subprocess.run([str(clean_venv / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env=CLEAN_ENV)
    assert ran.returncode == 0, ran.stderr
    assert int(ran.stdout) > 10000  # DFEW's ~11.7k clips and the header


def _status_rows(shards: Path, partition: str) -> list[dict]:
    """Every manifest row assigned to the partition's shards (docs/pipeline.md: the status tables)."""
    return [json.loads(line) for path in sorted(shards.glob(f"{partition}-*.status.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]
