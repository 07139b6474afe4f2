"""Weights for the `full` profile's models, which no package ships: find, fetch, hash-check or explain.

Face models (S3FD, FAN, BiSeNet: `WeightFile`). A file is looked for, in order, in the folder
the user names (`weights_dir`, else the `WEIGHTS_DIR` environment variable), then where the
libraries themselves cache it (torch hub's `checkpoints/` for face-alignment,
`facexlib/weights/` for facexlib), so weights that a connected machine already fetched with
those libraries are reused as they are. A file found nowhere is downloaded into `WEIGHTS_DIR`
(else torch hub's `checkpoints/`) from its official URL or, when `DFER_WEIGHTS_URL` is set,
from that mirror instead: `DFER_WEIGHTS_URL=http://host/path/` fetches each file by its own
name, `http://host/path/s3fd-619a316812.pth` and so on (any folder of the files served over
HTTP(S), or `file:///shared/folder/`). The official addresses stay the default.

A download is checked before it takes its final name (it is written under a temporary name
and renamed), and a file that fails is deleted and named in the error:
- its size against the server's Content-Length (a cut-off transfer);
- its SHA-256 against the hash we know: a full `sha256` when the `WeightFile` has one, else
  the hex digits its name carries, torch.hub's `check_hash` convention (a file named
  `name-<hex>.ext` must have a SHA-256 that starts with <hex>: face-alignment's
  `s3fd-619a316812.pth` and `2DFAN4-11f355bf06.pth.tar`, checked this way by the torch of their
  day). facexlib publishes no hash for `parsing_bisenet.pth` and its name carries none: its
  download is checked for completeness only, and its SHA-256 printed.
Files already on disk are taken as they are (they may be a user's own) and not re-hashed here;
every backend records its file's SHA-256 with its identity in the dataset index.

Hugging Face models (Video-LLaVA: `HubModel`). Fetched with huggingface_hub's
`snapshot_download` into the Hugging Face cache (`HF_HOME`), from `HF_ENDPOINT` (the Hub, or a
mirror of it). The Hub names every file by a hash, its ETag — an LFS file's SHA-256, a small
file's git blob SHA-1 — and the cache keeps each file under that name (`blobs/<etag>`);
huggingface_hub checks only the size of an HTTP download, so every file a download brings is
hashed again here and, when it differs from its ETag, deleted from the cache and named in the
error. A model id that is a local folder is used as it is.

Downloads are off with `HF_HUB_OFFLINE=1` or `DFER_OFFLINE=1` (the tests set them). Whatever
stays missing is reported in one `MissingWeightsError` naming every file and model, where it
is downloaded from and where to put it, so a user on an offline machine fixes everything in one
go: the pipeline calls `check_weights` before any work.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import os
import re
import sys
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "DFER_OFFLINE")
MIRROR_VARIABLE = "DFER_WEIGHTS_URL"
# torch.hub's HASH_REGEX (torch/hub.py, used by load_state_dict_from_url(check_hash=True)): the hex
# digits after the last "-" that is followed by hex digits and a dot. tests/test_full_stack.py
# checks that it is still torch's.
HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")
DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class WeightFile:
    name: str  # the file name the libraries use, so their caches are shared with ours
    url: str  # the official download
    model: str  # what it is, for people
    sha256: str | None = None  # the full SHA-256, when published; else the name's hash prefix, if any

    def download_url(self) -> str:
        """Where a download of this file comes from: the mirror named by DFER_WEIGHTS_URL, else the official URL."""
        base = os.environ.get(MIRROR_VARIABLE, "").strip()
        return f"{base.rstrip('/')}/{self.name}" if base else self.url

    def expected_sha256(self) -> str | None:
        """The full SHA-256, else the prefix its name carries (torch.hub's check_hash convention), else None."""
        if self.sha256:
            return self.sha256.lower()
        found = HASH_IN_NAME.search(self.name)
        return found.group(1) if found and found.group(1) else None


# Names and URLs exactly as face-alignment 1.5.0 and facexlib 0.3.0 use them.
FAN_2D = WeightFile("2DFAN4-11f355bf06.pth.tar",
                    "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
                    "face-alignment FAN (2DFAN4), 68-point 2-D landmarks")
S3FD = WeightFile("s3fd-619a316812.pth",
                  "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
                  "face-alignment S3FD face detector")
BISENET = WeightFile("parsing_bisenet.pth",
                     "https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth",
                     "facexlib BiSeNet face parsing (CelebAMask-HQ, 19 classes)")
FULL_PROFILE_WEIGHTS = (S3FD, FAN_2D, BISENET)

# The files of a transformers checkpoint that snapshot_download fetches: configuration, tokenizer
# and processor files, safetensors weights (not the .bin/.h5/.msgpack copies some repositories add).
HUB_MODEL_FILES = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja")


@dataclass(frozen=True)
class HubModel:
    """A Hugging Face model (a Hub id, or a local folder holding one) and what to tell people about it."""

    repo_id: str
    revision: str | None = None
    model: str = ""  # what it is, for people
    size: str = ""  # roughly how big a download it is, for people
    patterns: tuple[str, ...] = HUB_MODEL_FILES

    def is_folder(self) -> bool:
        """A folder rather than a Hub id: it exists, or it can only be meant as a path."""
        given = self.repo_id
        return (Path(given).expanduser().is_dir() or given.startswith(("/", ".", "~")) or given.count("/") > 1
                or "\\" in given)


class CorruptDownloadError(RuntimeError):
    """A download whose size or hash is not what it should be; the message names the file."""


class HubModelUnavailable(RuntimeError):
    """A Hugging Face model that is neither cached nor downloadable (or a named folder that does not exist)."""


class MissingWeightsError(RuntimeError):
    """Weights found nowhere and not downloadable; the message says what to fetch and where to put it."""

    def __init__(self, missing: list[tuple[WeightFile, str]], searched: list[Path], weights_dir: Path | None,
                 missing_models: list[tuple[HubModel, str]] = ()):
        self.missing = [file for file, _ in missing]
        self.missing_models = [model for model, _ in missing_models]
        count = len(missing) + len(missing_models)
        lines = [f"{count} model weight file(s) missing:"]
        for file, reason in missing:
            url = file.download_url()
            lines += [f"  - {file.name}: {file.model}",
                      f"      download: {url}" + ("" if url == file.url else f" (mirror of {file.url})"),
                      f"      ({reason})"]
        for model, reason in missing_models:
            lines += [f"  - {model.repo_id}: {model.model or 'Hugging Face model'}"] + [
                f"      {line}" for line in hub_model_advice(model)] + [f"      ({reason})"]
        if missing:
            lines.append("Looked in: " + (", ".join(str(d) for d in searched) or "nowhere"))
            if weights_dir is not None:
                lines.append(f"Download the weight files on a connected machine and put them in "
                             f"WEIGHTS_DIR={weights_dir}, then run again.")
            else:
                lines.append("Download the weight files on a connected machine, put them in a folder and pass "
                             "WEIGHTS_DIR=/path/to/that/folder (or run once with network access to fetch them; "
                             f"{MIRROR_VARIABLE}=http://host/path/ fetches them from a mirror of your own).")
        super().__init__("\n".join(lines))


def hub_model_advice(model: HubModel) -> list[str]:
    """Where a Hugging Face model comes from and where to put it, in a few lines."""
    if model.is_folder():
        return [f"expected a folder at {Path(model.repo_id).expanduser()} holding the model "
                "(config.json, weights, tokenizer and processor files)"]
    from huggingface_hub import constants

    revision = f" --revision {model.revision}" if model.revision else ""
    size = f" ({model.size})" if model.size else ""
    return [f"download{size}: `hf download {model.repo_id}{revision}` from {constants.ENDPOINT} (HF_ENDPOINT)",
            f"put it in the Hugging Face cache, {constants.HF_HUB_CACHE} (HF_HOME=folder holding hub/), where "
            "that command puts it; or download it into a folder (`--local-dir`) and give that folder as the "
            "model id (--describer-model /path/to/folder)"]


def downloads_allowed() -> bool:
    return not any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in OFFLINE_VARIABLES)


def user_weights_dir(weights_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder the user named: the argument, else `WEIGHTS_DIR`, else None."""
    chosen = weights_dir if weights_dir is not None else os.environ.get("WEIGHTS_DIR") or None
    return Path(chosen).expanduser() if chosen is not None else None


def _hub_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _library_caches() -> list[Path]:
    caches = [_hub_checkpoints()]
    # facexlib's own download folder; found without importing facexlib (which loads torchvision and more).
    spec = importlib.util.find_spec("facexlib")
    if spec is not None and spec.submodule_search_locations:
        caches.append(Path(spec.submodule_search_locations[0]) / "weights")
    return caches


def check_hash(file: WeightFile, digest: str, source: str) -> None:
    """Raise CorruptDownloadError, naming the file, when `digest` (its SHA-256) is not the one expected."""
    expected = file.expected_sha256()
    if expected is None or digest.startswith(expected):  # a full SHA-256 is its own 64-digit prefix
        return
    rule = ("its published SHA-256" if len(expected) == 64 else
            f"the hash in its name ({expected}…: the first hex digits of its SHA-256, torch.hub's convention)")
    raise CorruptDownloadError(f"{file.name}: the file downloaded from {source} has SHA-256 {digest}, which is not "
                               f"{rule}; it was refused and deleted (a corrupted download, or not the official file)")


def download_weight(file: WeightFile, folder: Path) -> Path:
    """Download `file` into `folder` (from the mirror if DFER_WEIGHTS_URL is set), checked as the module
    docstring says; only a checked file ever takes its final name."""
    url = file.download_url()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / file.name
    partial = folder / f".{file.name}.{uuid.uuid4().hex[:8]}.partial"
    print(f"downloading {file.name} from {url} into {folder}", file=sys.stderr)
    digest, size = hashlib.sha256(), 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "dfer-toolkit"})
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            length = response.headers.get("Content-Length")
            try:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            except http.client.IncompleteRead as cut:  # the connection closed before Content-Length bytes came
                size += len(cut.partial)
        if length is not None and size != int(length):
            raise CorruptDownloadError(f"{file.name}: the download from {url} ended after {size} of {length} bytes; "
                                       "it was refused and deleted")
        check_hash(file, digest.hexdigest(), url)
        if file.expected_sha256() is None:
            print(f"{file.name}: no published hash to check; its SHA-256 is {digest.hexdigest()}", file=sys.stderr)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def load_state_dict(path: Path, what: str) -> dict:
    """The tensors of a weight file (`torch.load(weights_only=True)`), or a RuntimeError naming the file
    and what it should have been (a cut-off or corrupted file, or another kind of file)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 — zip, pickle and EOF errors alike
        raise RuntimeError(f"{path} is not a readable {what} weight file ({type(error).__name__}: {error}); "
                           "delete it and run again to download it, or replace it") from error


# --- Hugging Face models ------------------------------------------------------------------------
def _etag_hash(path: Path, etag: str) -> str | None:
    """The hash of `path` in the kind its ETag is (SHA-256 for 64 hex digits, git blob SHA-1 for 40); None
    when the ETag is neither, so nothing can be checked."""
    if re.fullmatch(r"[0-9a-f]{64}", etag):
        digest = hashlib.sha256()
    elif re.fullmatch(r"[0-9a-f]{40}", etag):
        digest = hashlib.sha1()
        digest.update(b"blob %d\0" % path.stat().st_size)
    else:
        return None
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_hub_files(snapshot: Path, blobs: set[str] | None = None) -> None:
    """Hash every file of a cached snapshot (only those stored as one of `blobs`, when given) against the
    ETag it is stored under; delete each one that differs and raise CorruptDownloadError naming them."""
    bad = []
    for link in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        blob = link.resolve()
        if blob.parent.name != "blobs" or (blobs is not None and blob.name not in blobs):
            continue  # not stored under its ETag (a cache without symbolic links), or not new
        digest = _etag_hash(blob, blob.name)
        if digest is not None and digest != blob.name:
            bad.append(f"{link.relative_to(snapshot)} (the Hub's ETag says {blob.name}, the file hashes to {digest})")
            blob.unlink(missing_ok=True)
            link.unlink(missing_ok=True)
    if bad:
        raise CorruptDownloadError(f"{snapshot.parent.parent.name.removeprefix('models--').replace('--', '/')}: "
                                   f"downloaded file(s) refused and deleted from the cache: {'; '.join(bad)}")


def _missing_in_snapshot(folder: Path) -> list[str]:
    """The files a transformers checkpoint needs that `folder` lacks: config.json and every weights file."""
    import json

    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        missing += [name for name in shards if not (folder / name).is_file()]
    elif not any((folder / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        missing.append("model.safetensors (or model.safetensors.index.json and its shards)")
    return missing


def fetch_hub_model(model: HubModel) -> Path:
    """The local folder of `model`: the folder itself, or its snapshot in the Hugging Face cache, downloaded
    there first if downloads are allowed (every newly downloaded file hash-checked). Raises
    HubModelUnavailable (or CorruptDownloadError) saying why."""
    if model.is_folder():
        folder = Path(model.repo_id).expanduser()
        if not folder.is_dir():
            raise HubModelUnavailable(f"there is no folder {folder}")
        return folder
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.file_download import repo_folder_name

    offline = not downloads_allowed()
    blobs = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=model.repo_id, repo_type="model") / "blobs"
    before = {p.name for p in blobs.iterdir()} if blobs.is_dir() else set()
    try:
        folder = Path(snapshot_download(model.repo_id, revision=model.revision, allow_patterns=list(model.patterns),
                                        local_files_only=offline))
    except Exception as error:  # noqa: BLE001 — not cached offline, no network, no such repository, ...
        reason = (str(error).strip().splitlines() or [""])[0]
        where = "not in the Hugging Face cache and downloads are off (HF_HUB_OFFLINE or DFER_OFFLINE is set)" \
            if offline else f"download from {constants.ENDPOINT} failed"
        raise HubModelUnavailable(f"{where}: {type(error).__name__}: {reason}") from error
    new = {p.name for p in blobs.iterdir()} - before if blobs.is_dir() else set()
    if new:
        verify_hub_files(folder, new)
    missing = _missing_in_snapshot(folder)
    if missing:
        raise HubModelUnavailable(f"the cached snapshot {folder} lacks {', '.join(missing)}"
                                  + (" and downloads are off (HF_HUB_OFFLINE or DFER_OFFLINE is set)" if offline else ""))
    return folder


# --- everything at once -------------------------------------------------------------------------
def check_weights(files: Iterable[WeightFile], weights_dir: str | os.PathLike | None = None,
                  hub_models: Iterable[HubModel] = ()) -> dict[str, Path]:
    """Path of every file by name (and folder of every Hugging Face model by id), downloading what is missing
    if allowed; one MissingWeightsError listing all that stay missing."""
    files, hub_models = list(files), list(hub_models)
    if not files and not hub_models:   # the cpu profile: nothing to look for, and no torch to import for it
        return {}
    user_dir = user_weights_dir(weights_dir)
    searched = ([user_dir] if user_dir is not None else []) + _library_caches()
    found: dict[str, Path] = {}
    missing: list[tuple[WeightFile, str]] = []
    for file in files:
        path = next((d / file.name for d in searched if (d / file.name).is_file()), None)
        if path is None and not downloads_allowed():
            missing.append((file, "not downloaded: downloads are off (HF_HUB_OFFLINE or DFER_OFFLINE is set)"))
            continue
        if path is None:
            try:
                path = download_weight(file, user_dir if user_dir is not None else _hub_checkpoints())
            except CorruptDownloadError as error:
                missing.append((file, f"refused: {error}"))
                continue
            except Exception as error:  # no network, HTTP error, unwritable folder, ...
                missing.append((file, f"download failed: {type(error).__name__}: {error}"))
                continue
        found[file.name] = path
    missing_models: list[tuple[HubModel, str]] = []
    for model in hub_models:
        try:
            found[model.repo_id] = fetch_hub_model(model)
        except CorruptDownloadError as error:
            missing_models.append((model, f"refused: {error}"))
        except HubModelUnavailable as error:
            missing_models.append((model, str(error)))
    if missing or missing_models:
        raise MissingWeightsError(missing, searched, user_dir, missing_models)
    return found


def resolve_weight(file: WeightFile, weights_dir: str | os.PathLike | None = None) -> Path:
    """The local path of one weight file (see the module docstring for where it is looked for)."""
    return check_weights([file], weights_dir)[file.name]
