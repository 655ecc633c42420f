"""A small in-memory Hugging Face Hub on 127.0.0.1, for testing `push_to_hub` and `from_pretrained("user/repo")`
without a network.

Why: `HF_HUB_OFFLINE=1` makes every push fail at once and huggingface_hub ships no mock server, yet the upload path
(create repo -> preupload -> NDJSON commit) and the download path (HEAD/GET `resolve`) are worth exercising for
real. This server speaks exactly the endpoints huggingface_hub 2.x uses for them, answers "regular" upload mode for
every file (content travels base64 inside the commit: no LFS, no Xet) and serves files back with the headers
`hf_hub_download` reads (`X-Repo-Commit`, `ETag`, `Content-Length`, `X-Error-Code`).

Bounded on purpose: it binds 127.0.0.1 only, rejects request bodies over `max_body_bytes` and stores at most
`max_total_bytes`, and stops by itself after `idle_timeout` seconds without a request or `lifetime` seconds in all.
Not an implementation of the Hub: no auth (any token is accepted), no LFS, no pull requests, no branches but `main`.

    with LocalHubServer() as hub:              # hub.endpoint == "http://127.0.0.1:<port>"
        HfApi(endpoint=hub.endpoint).create_repo("user/tiny")
        ...                                     # child processes: env HF_ENDPOINT=hub.endpoint

`python -m transformers_cope.testing.hub_server` runs one in the foreground and prints its endpoint.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["LocalHubServer", "check_repo_path", "git_blob_sha1"]

_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_MAX_LINE = 1024  # longest chunk-size / trailer line accepted (real clients send < 20 bytes)
_MAX_TRAILERS = 32
_DRAIN_BYTES = 16 * 2**20  # at most this much of an oversized body is read so the client sees the 413
_DRAIN_SECONDS = 1.0
_SOCKET_TIMEOUT = 30.0  # a client silent this long mid-request is dropped (no thread held forever)
_MAX_PATH = 1024


def git_blob_sha1(data: bytes) -> str:
    """Git's object id of a file (what the Hub reports as a regular file's oid)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _json_object(body: bytes) -> dict:
    """A JSON object, or a 400: a list or a number where an object belongs is the client's error, not a crash."""
    value = json.loads(body)
    if not isinstance(value, dict):
        raise _HubError(400, f"Expected a JSON object, got {type(value).__name__}")
    return value


def _field(mapping: dict, key: str, kind: type, where: str):
    value = mapping.get(key)
    if not isinstance(value, kind):
        raise _HubError(400, f"{where}: {key!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def check_repo_path(path) -> str:
    """A file path inside a repo as the Hub accepts it: relative, forward slashes, no `.`/`..`/empty components.

    Why: stored paths come back in tree listings and `resolve` URLs, and a client that writes what it downloads
    (`hf_hub_download`, `snapshot_download`) must never be handed `../../x` or `/abs`.
    """
    if not isinstance(path, str) or not path or len(path) > _MAX_PATH:
        raise _HubError(400, f"Invalid path in repo: {str(path)[:80]!r}")
    parts = path.split("/")
    if (path.startswith("/") or "\\" in path or any(ord(c) < 32 for c in path)
            or any(part in ("", ".", "..") for part in parts) or re.match(r"^[A-Za-z]:", path)):
        raise _HubError(400, f"Invalid path in repo: {path[:80]!r} (relative, no '.', '..' or empty parts)")
    return path


@dataclass
class _Commit:
    oid: str
    files: dict[str, bytes]
    message: str
    parent: str | None
    time: float


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: list[_Commit] = field(default_factory=list)

    @property
    def head(self) -> _Commit:
        return self.commits[-1]

    def commit_for(self, revision: str) -> _Commit | None:
        """`main`, or a (prefix of a) commit id."""
        if revision == "main":
            return self.head
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            for commit in reversed(self.commits):
                if commit.oid.startswith(revision):
                    return commit
        return None


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, dict(extra or {})


class LocalHubServer:
    """In-memory Hub on 127.0.0.1 (see the module docstring). Use as a context manager or call start()/stop().

    Args:
        user: the namespace `create_repo("name")` (without an owner) lands in and `whoami` reports.
        max_body_bytes: largest accepted request body (a commit carries every file base64-encoded).
        max_total_bytes: cap on stored file bytes over all commits.
        idle_timeout: stop after this many seconds without a request.
        lifetime: stop after this many seconds in any case.
    """

    def __init__(self, *, user: str = "user", port: int = 0, max_body_bytes: int = 256 * 2**20,
                 max_total_bytes: int = 1024 * 2**20, idle_timeout: float = 300.0, lifetime: float = 3600.0):
        self.user = user
        self.max_body_bytes = int(max_body_bytes)
        self.max_total_bytes = int(max_total_bytes)
        self.idle_timeout = float(idle_timeout)
        self.lifetime = float(lifetime)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for tests
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._stored = 0
        self._lock = threading.Lock()
        self._last_request = time.monotonic()
        self._started = None
        self._stopped = threading.Event()
        self._closed = threading.Event()
        self._stop_lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", int(port)), self._handler_class())
        self._httpd.daemon_threads = True
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------------------------------------- lifecycle
    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LocalHubServer":
        if self._started is not None:
            return self
        self._started = time.monotonic()
        serve = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                 name="local-hub", daemon=True)
        watchdog = threading.Thread(target=self._watchdog, name="local-hub-watchdog", daemon=True)
        self._threads = [serve, watchdog]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
            if self._started is not None:
                self._httpd.shutdown()
            self._httpd.server_close()
            self._closed.set()

    @property
    def running(self) -> bool:
        """True from start() until the listening socket is closed."""
        return self._started is not None and not self._closed.is_set()

    def wait(self) -> None:
        """Block until the server has stopped (idle timeout, lifetime, or stop())."""
        self._closed.wait()

    def _watchdog(self) -> None:
        while not self._stopped.wait(0.5):
            now = time.monotonic()
            if now - self._last_request > self.idle_timeout or now - self._started > self.lifetime:
                self.stop()

    def __enter__(self) -> "LocalHubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------------- inspection
    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """The files of a repo at `revision` (a copy)."""
        with self._lock:
            commit = self._get_repo(repo_type, repo_id).commit_for(revision)
            if commit is None:
                raise KeyError(f"{repo_id} has no revision {revision!r}")
            return dict(commit.files)

    def commits(self, repo_id: str, repo_type: str = "model") -> list[str]:
        """Commit messages, oldest first (the first is the repo's creation)."""
        with self._lock:
            return [c.message for c in self._get_repo(repo_type, repo_id).commits]

    # ---------------------------------------------------------------------------------------------- the Hub API
    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _resolve(self, repo_type: str, repo_id: str, revision: str) -> tuple[_Repo, _Commit]:
        repo = self._get_repo(repo_type, repo_id)
        commit = repo.commit_for(revision)
        if commit is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo, commit

    def _new_commit(self, repo: _Repo, files: dict[str, bytes], message: str) -> _Commit:
        parent = repo.commits[-1].oid if repo.commits else None
        digest = hashlib.sha1()
        digest.update(f"{repo.repo_type}/{repo.repo_id}\n{parent}\n{message}\n{time.time_ns()}\n".encode())
        for path in sorted(files):
            digest.update(f"{path}\0{git_blob_sha1(files[path])}\n".encode())
        commit = _Commit(digest.hexdigest(), files, message, parent, time.time())
        repo.commits.append(commit)
        return commit

    def api_create_repo(self, body: dict) -> dict:
        name = body.get("name")
        owner = body.get("organization") or self.user
        repo_type = body.get("type") or "model"
        if repo_type not in _REPO_TYPES.values():
            raise _HubError(400, f"Invalid repo type {repo_type!r}")
        if not all(isinstance(x, str) and _REPO_NAME.match(x) for x in (name, owner)):
            raise _HubError(400, f"Invalid repo name {owner}/{name}")
        repo_id = f"{owner}/{name}"
        url = self._repo_url(repo_type, repo_id)
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                raise _HubError(409, f"You already created this {repo_type} repo", extra={"url": url})
            repo = _Repo(repo_type, repo_id, private=body.get("visibility") == "private" or bool(body.get("private")))
            self._new_commit(repo, {".gitattributes": _GITATTRIBUTES}, "initial commit")
            self._repos[(repo_type, repo_id)] = repo
        return {"url": url, "name": repo_id, "id": repo_id}

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.endpoint}/{prefix}{repo_id}"

    def api_preupload(self, repo_type: str, repo_id: str, revision: str, body: dict) -> dict:
        entries = body.get("files", [])
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise _HubError(400, "preupload: 'files' must be a list of objects")
        paths = [check_repo_path(entry.get("path")) for entry in entries]
        with self._lock:
            _, commit = self._resolve(repo_type, repo_id, revision)
            files = []
            for path in paths:
                existing = commit.files.get(path)
                files.append({
                    "path": path,
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(existing) if existing is not None else None,
                })
        return {"files": files, "commitOid": commit.oid}

    @staticmethod
    def _parse_commit(body: bytes) -> tuple[dict, list[tuple[str, dict]]]:
        """NDJSON commit -> (header value, [(key, value)]), every line checked for shape and every path validated."""
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or not isinstance(lines[0], dict) or lines[0].get("key") != "header":
            raise _HubError(400, "A commit starts with a header line")
        header = lines[0].get("value", {})
        if not isinstance(header, dict):
            raise _HubError(400, "commit header: 'value' must be an object")
        if not isinstance(header.get("summary") or "", str):
            raise _HubError(400, "commit header: 'summary' must be a string")
        operations = []
        for number, line in enumerate(lines[1:], start=2):
            if not isinstance(line, dict) or not isinstance(line.get("value"), dict):
                raise _HubError(400, f"commit line {number}: expected {{'key': ..., 'value': {{...}}}}")
            key, value = line.get("key"), line["value"]
            if key not in ("file", "deletedFile", "deletedFolder"):  # lfsFile, copies: everything stays inline
                raise _HubError(400, f"Unsupported commit operation {key!r} (only regular uploads)")
            path = check_repo_path(value.get("path"))
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise _HubError(400, f"Unsupported encoding for {path}")
                _field(value, "content", str, f"commit line {number}")
            operations.append((key, value))
        return header, operations

    def api_commit(self, repo_type: str, repo_id: str, revision: str, body: bytes, params: dict) -> dict:
        if params.get("create_pr"):
            raise _HubError(400, "This local Hub does not support pull requests")
        header, operations = self._parse_commit(body)
        with self._lock:
            repo, commit = self._resolve(repo_type, repo_id, revision)
            if revision != "main" and commit is not repo.head:
                raise _HubError(400, "Commits go to the head of main only", "RevisionNotFound")
            parent = header.get("parentCommit")
            if parent is not None and parent != repo.head.oid:
                raise _HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.head.files)
            added = 0
            for key, value in operations:
                path = value["path"]
                if key == "file":
                    data = base64.b64decode(value["content"], validate=True)
                    files[path] = data
                    added += len(data)
                elif key == "deletedFile":
                    if path not in files:
                        raise _HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                else:  # deletedFolder
                    prefix = path.rstrip("/") + "/"
                    for name in [name for name in files if name.startswith(prefix)]:
                        del files[name]
            if self._stored + added > self.max_total_bytes:
                raise _HubError(413, f"Local Hub storage cap reached ({self.max_total_bytes} bytes)")
            self._stored += added
            message = header.get("summary") or "commit"
            new = self._new_commit(repo, files, message)
        url = f"{self._repo_url(repo_type, repo_id)}/commit/{new.oid}"
        return {"success": True, "commitOid": new.oid, "commitUrl": url, "commitMessage": message}

    def api_repo_info(self, repo_type: str, repo_id: str, revision: str) -> dict:
        with self._lock:
            repo, commit = self._resolve(repo_type, repo_id, revision)
            siblings = [{"rfilename": path, "size": len(data)} for path, data in sorted(commit.files.items())]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.time))
        return {"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": commit.oid, "private": repo.private,
                "disabled": False, "gated": False, "tags": [], "downloads": 0, "likes": 0,
                "lastModified": stamp, "createdAt": stamp, "siblings": siblings}

    def api_tree(self, repo_type: str, repo_id: str, revision: str, path: str, recursive: bool) -> list[dict]:
        with self._lock:
            _, commit = self._resolve(repo_type, repo_id, revision)
            prefix = path.strip("/") + "/" if path.strip("/") else ""
            entries, folders = [], set()
            for name, data in sorted(commit.files.items()):
                if not name.startswith(prefix):
                    continue
                rest = name[len(prefix):]
                if "/" in rest and not recursive:
                    folders.add(prefix + rest.split("/", 1)[0])
                    continue
                if recursive:
                    parts = rest.split("/")[:-1]
                    folders.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
                entries.append({"type": "file", "path": name, "size": len(data), "oid": git_blob_sha1(data)})
            if prefix and not entries and not folders:
                raise _HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        return [{"type": "directory", "path": f, "oid": "0" * 40, "size": 0} for f in sorted(folders)] + entries

    def read_file(self, repo_type: str, repo_id: str, revision: str, path: str) -> tuple[_Commit, bytes]:
        with self._lock:
            _, commit = self._resolve(repo_type, repo_id, revision)
            data = commit.files.get(path)
        if data is None:
            raise _HubError(404, f"Entry not found: {path}", "EntryNotFound")
        return commit, data

    # ---------------------------------------------------------------------------------------------- HTTP
    def _handler_class(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "LocalHub/1.0"
            timeout = _SOCKET_TIMEOUT

            def log_message(self, format, *args):  # quiet: tests read `hub.requests` instead
                return

            def do_GET(self):
                self._dispatch("GET")

            def do_HEAD(self):
                self._dispatch("HEAD")

            def do_POST(self):
                self._dispatch("POST")

            def _body(self) -> bytes:
                """The request body, read strictly: a malformed or oversized framing is refused before any large
                read, so no header value can make the server buffer more than `max_body_bytes`."""
                encoding = self.headers.get("Transfer-Encoding")
                length = self.headers.get("Content-Length")
                if encoding is not None:
                    self.close_connection = True  # whatever goes wrong below, the stream position is unknown
                    if encoding.strip().lower() != "chunked":
                        raise _HubError(400, f"Unsupported Transfer-Encoding {encoding!r}")
                    if length is not None:
                        raise _HubError(400, "Both Content-Length and Transfer-Encoding given")
                    body = self._chunked_body()
                    self.close_connection = False
                    return body
                if length is None:
                    return b""
                if not re.fullmatch(r"[0-9]{1,19}", length.strip()):
                    self.close_connection = True
                    raise _HubError(400, f"Invalid Content-Length {length!r}")
                length = int(length)
                if length > hub.max_body_bytes:
                    # Read (a bounded amount of) what the client is sending so it sees the 413, not a reset.
                    # A client that stalls is not waited for beyond `_DRAIN_SECONDS`.
                    self.close_connection = True
                    left, deadline = min(length, _DRAIN_BYTES), time.monotonic() + _DRAIN_SECONDS
                    self.connection.settimeout(_DRAIN_SECONDS)
                    try:
                        while left > 0 and time.monotonic() < deadline:
                            chunk = self.rfile.read1(min(left, 2**16))
                            if not chunk:
                                break
                            left -= len(chunk)
                    except OSError:
                        pass
                    raise _HubError(413, "Request body too large")
                body = self.rfile.read(length) if length else b""
                if len(body) != length:
                    self.close_connection = True
                    raise _HubError(400, "Request body shorter than its Content-Length")
                return body

            def _line(self, what: str) -> bytes:
                """One CRLF-terminated framing line of at most `_MAX_LINE` bytes."""
                line = self.rfile.readline(_MAX_LINE + 1)
                if len(line) > _MAX_LINE or not line.endswith(b"\n"):
                    raise _HubError(400, f"Malformed chunked body: {what} line too long or truncated")
                return line.rstrip(b"\r\n")

            def _chunked_body(self) -> bytes:
                chunks, total = [], 0
                while True:
                    size_text = self._line("chunk-size").split(b";", 1)[0].strip()
                    if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
                        raise _HubError(400, f"Malformed chunk size {size_text[:32]!r}")
                    size = int(size_text, 16)
                    if size == 0:
                        for _ in range(_MAX_TRAILERS + 1):  # trailer fields, then the empty line
                            if not self._line("trailer"):
                                return b"".join(chunks)
                        raise _HubError(400, "Too many trailer lines")
                    total += size
                    if total > hub.max_body_bytes:
                        raise _HubError(413, "Request body too large")
                    chunk = self.rfile.read(size)
                    if len(chunk) != size or self._line("chunk end"):
                        raise _HubError(400, "Malformed chunked body: chunk shorter than its size")
                    chunks.append(chunk)

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(status)
                headers = dict(headers or {})
                headers.setdefault("Content-Type", "application/json")
                headers.setdefault("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if body and not head:
                    self.wfile.write(body)

            def _json(self, status: int, payload) -> None:
                self._send(status, json.dumps(payload).encode())

            def _dispatch(self, method: str) -> None:
                hub._last_request = time.monotonic()
                url = urlsplit(self.path)
                path = unquote(url.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                with hub._lock:
                    hub.requests.append((method, path))
                try:
                    body = self._body() if method == "POST" else b""
                    self._route(method, path, params, body)
                except _HubError as err:
                    headers = {"X-Error-Message": err.message}
                    if err.code:
                        headers["X-Error-Code"] = err.code
                    payload = json.dumps({"error": err.message, **err.extra}).encode()
                    self._send(err.status, payload, headers, head=method == "HEAD")
                except (ValueError, KeyError, json.JSONDecodeError) as err:  # UnicodeDecodeError, binascii.Error too
                    self._send(400, json.dumps({"error": f"Bad request: {err}"}).encode(), head=method == "HEAD")
                except Exception as err:  # a bug here must answer, not drop the connection with a traceback
                    self.close_connection = True
                    message = f"Internal error: {type(err).__name__}: {err}"
                    self._send(500, json.dumps({"error": message}).encode(), head=method == "HEAD")

            def _route(self, method: str, path: str, params: dict, body: bytes) -> None:
                parts = [p for p in path.split("/") if p]
                if method == "POST" and path == "/api/repos/create":
                    return self._json(200, hub.api_create_repo(_json_object(body or b"{}")))
                if method == "POST" and path == "/api/validate-yaml":
                    return self._json(200, {"errors": [], "warnings": []})
                if method == "GET" and path == "/api/whoami-v2":
                    return self._json(200, {"type": "user", "name": hub.user, "orgs": [],
                                            "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
                if len(parts) >= 4 and parts[0] == "api" and parts[1] in _REPO_TYPES:
                    repo_type, repo_id, rest = _REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}", parts[4:]
                    if method == "POST" and len(rest) == 2 and rest[0] == "preupload":
                        return self._json(200, hub.api_preupload(repo_type, repo_id, rest[1], _json_object(body)))
                    if method == "POST" and len(rest) == 2 and rest[0] == "commit":
                        return self._json(200, hub.api_commit(repo_type, repo_id, rest[1], body, params))
                    if method == "GET" and not rest:
                        return self._json(200, hub.api_repo_info(repo_type, repo_id, "main"))
                    if method == "GET" and len(rest) == 2 and rest[0] == "revision":
                        return self._json(200, hub.api_repo_info(repo_type, repo_id, rest[1]))
                    if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
                        recursive = params.get("recursive", "").lower() in ("1", "true")
                        tree = hub.api_tree(repo_type, repo_id, rest[1], "/".join(rest[2:]), recursive)
                        return self._json(200, tree)
                # file download: /{repo}/resolve/{rev}/{path} (models) or /{datasets|spaces}/{repo}/resolve/...
                repo_type = "model"
                if parts and parts[0] in ("datasets", "spaces"):
                    repo_type, parts = _REPO_TYPES[parts[0]], parts[1:]
                if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
                    repo_id, revision, file_path = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
                    commit, data = hub.read_file(repo_type, repo_id, revision, file_path)
                    headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": commit.oid,
                               "ETag": f'"{git_blob_sha1(data)}"', "Content-Length": str(len(data))}
                    return self._send(200, data, headers, head=method == "HEAD")
                raise _HubError(404, f"Not found: {method} {path}")

        return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run an in-memory Hugging Face Hub on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--idle-timeout", type=float, default=600.0, help="stop after this many idle seconds")
    parser.add_argument("--lifetime", type=float, default=3600.0, help="stop after this many seconds")
    args = parser.parse_args(argv)
    hub = LocalHubServer(port=args.port, idle_timeout=args.idle_timeout, lifetime=args.lifetime).start()
    print(f"HF_ENDPOINT={hub.endpoint}", flush=True)
    try:
        hub.wait()
    except KeyboardInterrupt:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
