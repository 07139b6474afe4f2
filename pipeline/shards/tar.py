"""Write and read tar shards of ClipSamples: plain Python, no torch.

The pipeline's workers write shards with this module alone, so they never import torch;
`pipeline.shards.reader` (which re-exports everything here) adds the PyTorch `ShardReader`.
Shard files are named `{partition}-{index:06d}.tar`. `ShardWriter` writes `<name>.tar.tmp`
and renames it to `<name>.tar` only when the shard is complete, so a partial shard is never
visible.
"""

from __future__ import annotations

import contextlib
import glob
import io
import tarfile
from pathlib import Path
from typing import IO, Iterator, Sequence

from pipeline.shards.files import TMP_SUFFIX, AtomicFile  # noqa: F401 (TMP_SUFFIX: re-exported)
from pipeline.shards.format import ClipSample, ShardFormatError, decode_sample, encode_sample

SHARD_SUFFIX = ".tar"


def shard_name(partition: str, index: int) -> str:
    return f"{partition}-{index:06d}{SHARD_SUFFIX}"


class ShardWriteError(OSError):
    """A shard could not be written (disk full, quota, I/O error); no partial file is left."""

    @classmethod
    def of(cls, path: Path, error: OSError) -> "ShardWriteError":
        return cls(error.errno, f"{path}: the shard could not be written ({error.strerror or error}); no partial "
                                "shard was left. Free disk space and rerun: complete shards are kept")


class ShardWriter:
    """Write ClipSamples into one tar shard, atomically: `with ShardWriter(path) as w: w.write(s)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = AtomicFile(self.path)
        self.tmp_path = self._out.tmp_path
        self._tar = tarfile.open(fileobj=self._out.file, mode="w", format=tarfile.PAX_FORMAT)
        self.keys: list[str] = []

    def write(self, sample: ClipSample) -> None:
        members = encode_sample(sample)
        key = members.pop("__key__")
        if key in self.keys:
            raise ShardFormatError(f"{self.path}: sample key {key!r} written twice")
        try:
            for field, data in members.items():
                info = tarfile.TarInfo(f"{key}.{field}")
                info.size = len(data)
                info.mode = 0o444
                info.mtime = 0  # reproducible shards: same input, same bytes
                self._tar.addfile(info, io.BytesIO(data))
        except OSError as error:
            self.abort()
            raise ShardWriteError.of(self.path, error) from error
        self.keys.append(key)

    def close(self) -> None:
        """Finish the tar and make it visible under its final name."""
        try:
            self._tar.close()
            self._out.commit()
        except OSError as error:
            self.abort()
            raise ShardWriteError.of(self.path, error) from error

    def abort(self) -> None:
        """Drop the partial shard (also when the disk is full and closing the tar fails again)."""
        with contextlib.suppress(OSError):
            self._tar.close()
        self._out.abort()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def iter_tar_members(source: str | Path | IO[bytes]) -> Iterator[dict[str, bytes]]:
    """Stream a tar and yield {"__key__", "__url__", field: bytes} per sample (WebDataset grouping)."""
    url = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "<stream>")
    opened = open(source, "rb") if isinstance(source, (str, Path)) else None
    try:
        with tarfile.open(fileobj=opened or source, mode="r|*") as tar:
            current: dict[str, bytes] | None = None
            for info in tar:
                if not info.isfile():
                    continue
                base = info.name.rsplit("/", 1)[-1]
                prefix = info.name[: len(info.name) - len(base)]
                key, _, field = base.partition(".")
                key = prefix + key
                if current is not None and current["__key__"] != key:
                    yield current
                    current = None
                if current is None:
                    current = {"__key__": key, "__url__": url}
                current[field] = tar.extractfile(info).read()
            if current is not None:
                yield current
    except tarfile.ReadError as err:
        raise ShardFormatError(f"{url}: not a readable tar shard ({err})") from err
    finally:
        if opened is not None:
            opened.close()


def read_shard(path: str | Path) -> Iterator[ClipSample]:
    """Every ClipSample of one shard, in order."""
    for members in iter_tar_members(path):
        yield decode_sample(members)


def list_shards(source: str | Path | Sequence[str | Path], partitions: Sequence[str] | None = None) -> list[Path]:
    """Shard paths from a dataset folder, a glob, one tar, or a list; filtered by partition prefix."""
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
    elif Path(source).is_dir():
        paths = sorted(Path(source).glob(f"*{SHARD_SUFFIX}"))
    else:
        paths = [Path(p) for p in sorted(glob.glob(str(source)))] or [Path(source)]
    if partitions is not None:
        wanted = tuple(f"{p}-" for p in partitions)
        paths = [p for p in paths if p.name.startswith(wanted)]
    return paths
