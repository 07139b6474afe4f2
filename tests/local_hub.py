"""A stand-in for the model hubs on 127.0.0.1, started by a test: the face models' mirror and a Hugging Face Hub.

- `/weights/<name>`: a folder of weight files, as a mirror named by DFER_WEIGHTS_URL serves them
  (GET with Content-Length; `corrupt` files are served with flipped bytes, `truncated` ones cut
  short of the length they announce).
- The Hugging Face routes huggingface_hub (2.x) reads for `snapshot_download`, at HF_ENDPOINT:
  `GET /api/models/{repo}/revision/{rev}` (the commit and the file list), `GET
  /api/models/{repo}/tree/{rev}` (every file with its git blob id, size and LFS SHA-256), and
  `HEAD`/`GET /{repo}/resolve/{rev}/{file}` with the headers it requires: X-Repo-Commit, ETag
  (an LFS file's SHA-256 in X-Linked-Etag, with X-Linked-Size; a small file's git blob SHA-1),
  Content-Length. Unknown repositories, revisions and files answer 404 with the Hub's
  X-Error-Code. Files in a repository's `corrupt` set are served with their true ETag and size but
  flipped bytes, as a broken transfer or a bad mirror would.

Every request is logged in `requests` as (method, path).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".pth", ".pt")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def flipped(data: bytes) -> bytes:
    """The same length, every byte of the second half inverted."""
    half = len(data) // 2
    return data[:half] + bytes(b ^ 0xFF for b in data[half:])


@dataclass
class HubRepo:
    commit: str
    files: dict[str, bytes]
    corrupt: set[str] = field(default_factory=set)

    @classmethod
    def from_folder(cls, folder: Path, corrupt: set[str] = frozenset()) -> "HubRepo":
        files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        commit = hashlib.sha1(b"".join(hashlib.sha256(d).digest() for d in files.values())).hexdigest()
        return cls(commit=commit, files=files, corrupt=set(corrupt))

    def is_lfs(self, name: str) -> bool:
        return name.endswith(LFS_SUFFIXES)

    def etag(self, name: str) -> str:
        data = self.files[name]
        return hashlib.sha256(data).hexdigest() if self.is_lfs(name) else git_blob_sha1(data)


class LocalHub:
    """The server; `with LocalHub() as hub:` or start()/close(). `url` is http://127.0.0.1:<port>."""

    def __init__(self):
        self.weights: dict[str, bytes] = {}
        self.corrupt_weights: set[str] = set()
        self.truncated_weights: set[str] = set()
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                hub._answer(self, body=False)

            def do_GET(self):
                hub._answer(self, body=True)

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def weights_url(self) -> str:
        return f"{self.url}/weights/"

    def start(self) -> "LocalHub":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- answers ---------------------------------------------------------------------------------
    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        self.requests.append((handler.command, path))
        status, headers, data = self._route(path)
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        if "Content-Length" not in headers:
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    def _route(self, path: str) -> tuple[int, dict, bytes]:
        if path.startswith("/weights/"):
            return self._weight(path.removeprefix("/weights/"))
        if path.startswith("/api/models/"):
            return self._api(path.removeprefix("/api/models/"))
        for repo_id, repo in self.repos.items():
            if path.startswith(f"/{repo_id}/resolve/"):
                revision, _, name = path.removeprefix(f"/{repo_id}/resolve/").partition("/")
                return self._resolve(repo, revision, name)
        return self._not_found("RepoNotFound")

    def _weight(self, name: str) -> tuple[int, dict, bytes]:
        if name not in self.weights:
            return 404, {}, b"not found"
        data = self.weights[name]
        if name in self.corrupt_weights:
            return 200, {}, flipped(data)
        if name in self.truncated_weights:
            return 200, {"Content-Length": str(len(data))}, data[: len(data) // 2]
        return 200, {}, data

    def _not_found(self, code: str, commit: str | None = None) -> tuple[int, dict, bytes]:
        headers = {"X-Error-Code": code, "Content-Type": "application/json"}
        if commit:
            headers["X-Repo-Commit"] = commit
        return 404, headers, json.dumps({"error": code}).encode()

    def _repo_and_rest(self, path: str) -> tuple[str | None, str]:
        for repo_id in self.repos:
            if path.startswith(repo_id + "/") or path == repo_id:
                return repo_id, path[len(repo_id):].lstrip("/")
        return None, path

    def _api(self, path: str) -> tuple[int, dict, bytes]:
        repo_id, rest = self._repo_and_rest(path)
        if repo_id is None:
            return self._not_found("RepoNotFound")
        repo = self.repos[repo_id]
        kind, _, revision = rest.partition("/")
        revision, _, _subpath = revision.partition("/")
        if revision not in ("main", repo.commit):
            return self._not_found("RevisionNotFound")
        if kind == "revision":
            info = {"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False, "disabled": False,
                    "gated": False, "tags": [], "downloads": 0, "likes": 0,
                    "siblings": [{"rfilename": name} for name in repo.files]}
            return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()
        if kind == "tree":
            entries = []
            for name, data in repo.files.items():
                entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_sha1(data)}
                if repo.is_lfs(name):
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                entries.append(entry)
            return 200, {"Content-Type": "application/json"}, json.dumps(entries).encode()
        return self._not_found("EntryNotFound")

    def _resolve(self, repo: HubRepo, revision: str, name: str) -> tuple[int, dict, bytes]:
        if revision not in ("main", repo.commit):
            return self._not_found("RevisionNotFound")
        if name not in repo.files:
            return self._not_found("EntryNotFound", repo.commit)
        data = repo.files[name]
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{git_blob_sha1(data)}"'}
        if repo.is_lfs(name):
            headers.update({"X-Linked-Etag": f'"{repo.etag(name)}"', "X-Linked-Size": str(len(data))})
        return 200, headers, flipped(data) if name in repo.corrupt else data
