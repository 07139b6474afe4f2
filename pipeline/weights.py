"""Weight files for the `full` profile's models, which no package ships: find, fetch or explain.

A file is looked for, in order, in the folder the user names (`weights_dir`, else the
`WEIGHTS_DIR` environment variable), then where the libraries themselves cache it (torch
hub's `checkpoints/` for face-alignment, `facexlib/weights/` for facexlib), so weights that a
connected machine already fetched with those libraries are reused as they are. A file found
nowhere is downloaded from its official URL unless downloads are off (`HF_HUB_OFFLINE=1` or
`DFER_OFFLINE=1`; the tests set them). Whatever stays missing is reported in one
`MissingWeightsError` naming every file, its URL and where to put it, so a user on an offline
machine fixes everything in one go: the pipeline calls `check_weights` before any work.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "DFER_OFFLINE")


@dataclass(frozen=True)
class WeightFile:
    name: str  # the file name the libraries use, so their caches are shared with ours
    url: str  # the official download
    model: str  # what it is, for people
    sha256: str | None = None  # checked after a download when known


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


class MissingWeightsError(RuntimeError):
    """Weight files found nowhere and not downloadable; the message says what to fetch and where to put it."""

    def __init__(self, missing: list[tuple[WeightFile, str]], searched: list[Path], weights_dir: Path | None):
        self.missing = [file for file, _ in missing]
        lines = [f"{len(missing)} model weight file(s) missing:"]
        for file, reason in missing:
            lines += [f"  - {file.name}: {file.model}", f"      download: {file.url}", f"      ({reason})"]
        lines.append("Looked in: " + (", ".join(str(d) for d in searched) or "nowhere"))
        if weights_dir is not None:
            lines.append(f"Download them on a connected machine and put them in WEIGHTS_DIR={weights_dir}, "
                         "then run again.")
        else:
            lines.append("Download them on a connected machine, put them in a folder and pass "
                         "WEIGHTS_DIR=/path/to/that/folder (or run once with network access to fetch them).")
        super().__init__("\n".join(lines))


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


def _download(file: WeightFile, folder: Path) -> Path:
    import torch.hub

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / file.name
    # Writes to a temporary file and renames, so an interrupted download never leaves a bad file.
    torch.hub.download_url_to_file(file.url, str(target), hash_prefix=file.sha256, progress=True)
    return target


def check_weights(files: Iterable[WeightFile], weights_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Path of every file by name, downloading what is missing if allowed; one error listing all that stay missing."""
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
                path = _download(file, user_dir if user_dir is not None else _hub_checkpoints())
            except Exception as error:  # no network, HTTP error, wrong hash, unwritable folder, ...
                missing.append((file, f"download failed: {type(error).__name__}: {error}"))
                continue
        found[file.name] = path
    if missing:
        raise MissingWeightsError(missing, searched, user_dir)
    return found


def resolve_weight(file: WeightFile, weights_dir: str | os.PathLike | None = None) -> Path:
    """The local path of one weight file (see the module docstring for where it is looked for)."""
    return check_weights([file], weights_dir)[file.name]
