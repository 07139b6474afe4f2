"""DFER-CLIP's class descriptions: fetch the reference `models/Text.py` into the cache, check it, find it.

    make fetch-reference          # python -m trainer.fetch_reference (the command line of `fetch`)

`RECIPE=reference` trains DFER-CLIP with the class descriptions of its reference code, which live in
its repository's `models/Text.py` (lists `class_descriptor_7` and `class_descriptor_11`). We do not
copy their text into this repository: `fetch` downloads the file at a pinned commit from GitHub into
the user's cache (`~/.cache/dfer-toolkit/reference/`, or `$DFER_TOOLKIT_CACHE/reference/`) and
checks its SHA-256 against the one recorded here; the trainer reads it with `ast`, never running
it (`trainer.dferclip.read_class_descriptions`), and checks the hash again on every run. Without the
file a reference run stops and says how to get it, unless `--set class_descriptions=ours` asks for
our descriptions (recorded in metrics.json).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path
from typing import Any

REPOSITORY = "zengqunzhao/DFER-CLIP"
COMMIT = "d10d5a4310a60c477778a086a292b591ee50e2ce"   # the repository's head when we pinned it
PATH = "models/Text.py"
SHA256 = "267d49d595e7b9945728c274d46ad213eaff28b1ef539930b9937a2a639550c4"   # of PATH at COMMIT
URL = f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}/{PATH}"
LISTS = ("class_descriptor_7", "class_descriptor_11")   # DFEW and FERV39k; MAFW


def cache_root() -> Path:
    return Path(os.environ.get("DFER_TOOLKIT_CACHE") or Path.home() / ".cache" / "dfer-toolkit")


def cached_file() -> Path:
    """Where `fetch` puts the reference Text.py, and where `RECIPE=reference` looks for it."""
    return cache_root() / "reference" / f"DFER-CLIP-{COMMIT[:12]}" / "Text.py"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def how_to_fetch() -> str:
    return (f"RECIPE=reference trains DFER-CLIP with its reference code's class descriptions "
            f"({REPOSITORY} {PATH}), which this repository does not copy, and {cached_file()} is not there. "
            f"Fetch it once with `make fetch-reference` (or `python -m trainer.fetch_reference`: "
            f"downloads {URL} and checks its SHA-256 {SHA256}), or train with our descriptions instead: "
            f"TRAIN_ARGS=\"--set class_descriptions=ours\" (recorded in metrics.json)")


def check_lists(path: Path) -> None:
    """The file holds the description lists the trainer reads (parsed with `ast`, not run)."""
    from trainer.dferclip import python_string_list

    for name in LISTS:
        python_string_list(path, name)


def fetch(url: str = URL, sha256: str = SHA256, dest: Path | None = None, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` (default `cached_file()`) unless a file with `sha256` is there already;
    the download is checked (hash, then the lists it must hold) before it is renamed into place."""
    dest = Path(dest or cached_file())
    if dest.is_file() and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except OSError as error:
        raise RuntimeError(f"could not download {url}: {error}. On a machine without access, download it "
                           f"elsewhere and put it at {dest} (SHA-256 {sha256})") from error
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise ValueError(f"{url} has SHA-256 {got}, not the recorded {sha256}: not the file this recipe was "
                         f"checked against, so it is not used")
    partial.write_bytes(data)
    try:
        check_lists(partial)
    except (ValueError, SyntaxError) as error:
        partial.unlink()
        raise ValueError(f"{url}: {error}") from error
    partial.replace(dest)
    return dest


def describe_source(setting: str) -> dict[str, Any]:
    """The class descriptions a DFER-CLIP run reads for `class_descriptions` = `setting`:
    {"source": "ours" | "reference" | "file", "file": path ("" for ours), "sha256": of the file}.
    "reference" needs the fetched file with the recorded hash (FileNotFoundError / ValueError saying
    what to do otherwise); anything else is a path to a description file."""
    if setting == "ours":
        return {"source": "ours", "file": "", "sha256": None}
    if setting == "reference":
        path = cached_file()
        if not path.is_file():
            raise FileNotFoundError(how_to_fetch())
        got = sha256_of(path)
        if got != SHA256:
            raise ValueError(f"{path} has SHA-256 {got}, not the reference's {SHA256}: delete it and run "
                             f"`make fetch-reference` again")
        return {"source": "reference", "file": str(path), "sha256": got, "url": URL}
    path = Path(setting).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"class_descriptions: {path} is not a file (give ours, reference, or the path "
                                f"of a description file: docs/training.md)")
    return {"source": "file", "file": str(path), "sha256": sha256_of(path)}
