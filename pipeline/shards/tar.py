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
    """Stream a tar and yield {"__key__", "__url__", field: bytes} per sample (WebDataset grouping).

    The headers our writer emits (ustar, names under 100 bytes, regular files) are parsed here
    directly, which costs a tenth of `tarfile`'s per-member work (the training loader reads a dozen
    members per clip); at the first header of any other kind (a PAX or GNU long name, a link, a
    sparse file) the rest of the archive is read by `tarfile`."""
    url = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "<stream>")
    opened = open(source, "rb") if isinstance(source, (str, Path)) else None
    stream = opened or source
    current: dict[str, bytes] | None = None

    def add(name: str, data: bytes) -> dict[str, bytes] | None:
        """File `name` into the current sample; return the previous sample when `name` starts another."""
        nonlocal current
        base = name.rsplit("/", 1)[-1]
        key, _, field = base.partition(".")
        key = name[: len(name) - len(base)] + key
        done = None
        if current is not None and current["__key__"] != key:
            done, current = current, None
        if current is None:
            current = {"__key__": key, "__url__": url}
        current[field] = data
        return done

    try:
        rest = None   # a header this reader leaves to tarfile, with everything after it
        while True:
            header = stream.read(BLOCK)
            if len(header) < BLOCK or header == ZERO_BLOCK:
                if 0 < len(header) < BLOCK:
                    raise ShardFormatError(f"{url}: not a readable tar shard (it ends inside a header)")
                break
            member = _plain_member(header)
            if member is None:
                rest = header
                break
            name, size = member
            data = stream.read(size)
            if len(data) < size:
                raise ShardFormatError(f"{url}: not a readable tar shard (member {name} is cut short)")
            stream.read(-size % BLOCK)
            if (done := add(name, data)) is not None:
                yield done
        if rest is not None:
            with tarfile.open(fileobj=_Prefixed(rest, stream), mode="r|*") as tar:
                for info in tar:
                    if info.isfile() and (done := add(info.name, tar.extractfile(info).read())) is not None:
                        yield done
        if current is not None:
            yield current
    except tarfile.ReadError as err:
        raise ShardFormatError(f"{url}: not a readable tar shard ({err})") from err
    finally:
        if opened is not None:
            opened.close()


BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
_USTAR = (b"ustar\x0000", b"ustar  \x00")   # POSIX and old GNU magic + version


def _plain_member(header: bytes) -> tuple[str, int] | None:
    """(name, size) of a ustar header for a regular file with a short plain name and a valid checksum;
    None for anything `tarfile` should read (other types, PAX/GNU extensions, prefixed names)."""
    if header[257:265] not in _USTAR or header[156:157] not in (b"0", b"\x00") or header[345:346] != b"\x00":
        return None
    size_field = header[124:136]
    if size_field[:1] >= b"\x80":   # base-256 size: a member over 8 GiB
        return None
    try:
        size = int(size_field.rstrip(b"\x00 ") or b"0", 8)
        checksum = int(header[148:156].rstrip(b"\x00 ") or b"0", 8)
    except ValueError:
        return None
    if checksum != sum(header[:148]) + 256 + sum(header[156:]):
        return None
    name = header[:100].split(b"\x00", 1)[0]
    try:
        return name.decode("ascii"), size
    except UnicodeDecodeError:
        return None


class _Prefixed(io.RawIOBase):
    """A stream that yields `prefix` and then the rest of `stream` (hands a read header back to tarfile)."""

    def __init__(self, prefix: bytes, stream: IO[bytes]):
        self.prefix, self.stream = prefix, stream

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self.prefix:
            return self.stream.read(size)
        if size < 0:
            out, self.prefix = self.prefix + self.stream.read(), b""
            return out
        out, self.prefix = self.prefix[:size], self.prefix[size:]
        return out + (self.stream.read(size - len(out)) if len(out) < size else b"")


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
