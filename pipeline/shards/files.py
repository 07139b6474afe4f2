"""The toolkit's two file helpers: files written whole or not at all, and a file's SHA-256.

`AtomicFile(path)` writes into `<path>.tmp`; `commit()` flushes it to disk and renames it over
`path`, `abort()` removes it. A reader therefore never finds a half-written file under its
final name, and a crash or a full disk leaves the previous version (or nothing). It is also a
context manager (`with AtomicFile(path) as f: f.write(...)`: committed when the block ends
without an error, aborted otherwise); `write_atomic(path, text)` is the one-line form.
Shards, status and stats files, the index, checkpoints and benchmark results all use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import IO

TMP_SUFFIX = ".tmp"
CHUNK = 1 << 20


class AtomicFile:
    """A binary file that appears under `path` only once `commit()` has run."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp_path = self.path.with_name(self.path.name + TMP_SUFFIX)
        self.file: IO[bytes] = open(self.tmp_path, "wb")

    def commit(self) -> None:
        """Flush to disk and rename over `path`; on failure (OSError) the temporary file is removed."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp_path, self.path)
        except OSError:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the temporary file (also when closing it fails again, as on a full disk)."""
        with contextlib.suppress(OSError):
            self.file.close()
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> IO[bytes]:
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) into `path` whole or not at all."""
    with AtomicFile(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (weight files and shards are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
