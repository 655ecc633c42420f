"""LocalHubServer under hostile requests (issue 16, D5): strict Content-Length, bounded chunked framing, 400 for
JSON of the wrong shape, and commit paths that could escape a download folder refused.

Every attack goes over a raw socket, so the server sees exactly the bytes a malicious client would send; after
each one the server must still answer a normal request."""

from __future__ import annotations

import base64
import json
import socket

import pytest

from transformers_cope.testing.hub_server import LocalHubServer, check_repo_path

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def hub():
    with LocalHubServer(idle_timeout=60, lifetime=120, max_body_bytes=4096) as server:
        yield server


def _raw(hub: LocalHubServer, head: bytes, body: bytes = b"", *, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send raw bytes, return (status, response body). Tolerates the server closing the socket mid-send."""
    host, port = hub._httpd.server_address[:2]
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(head + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything: what the test wants to see
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        header, _, rest = data.partition(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        length = 0
        for line in header.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            piece = sock.recv(65536)
            if not piece:
                break
            rest += piece
        return status, rest


def _post(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _still_serving(hub: LocalHubServer) -> None:
    status, body = _raw(hub, b"GET /api/whoami-v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 200 and json.loads(body)["name"] == "user"


@pytest.mark.parametrize("value", ["-1", "-4097", "abc", "+12", "1e3", "0x10", " ", "99999999999999999999999"])
def test_content_length_must_be_a_plain_non_negative_integer(hub, value):
    status, body = _raw(hub, _post("/api/repos/create", f"Content-Length: {value}"), b'{"name": "x"}')
    assert status == 400, body
    assert not hub._repos
    _still_serving(hub)


def test_content_length_over_the_cap_is_413_without_reading_it(hub):
    status, _ = _raw(hub, _post("/api/repos/create", f"Content-Length: {10**15}"), b"x" * 1000)
    assert status == 413
    _still_serving(hub)


def test_endless_chunk_size_line_is_refused_after_a_bounded_read(hub):
    # Before the fix the server read the whole line (unbounded) and then waited for more: a 3 GB RSS / a hang.
    status, _ = _raw(hub, _post("/api/repos/create", "Transfer-Encoding: chunked"), b"f" * 200_000)
    assert status == 400
    _still_serving(hub)


@pytest.mark.parametrize("framing", [
    b"-1\r\nabc\r\n0\r\n\r\n",                         # negative size
    b"zz\r\nabc\r\n0\r\n\r\n",                         # not hex
    b"3\r\nabcdef\r\n0\r\n\r\n",                       # chunk longer than its size
    b"0\r\n" + b"X-Trailer: 1\r\n" * 100 + b"\r\n",    # endless trailers
])
def test_malformed_chunked_bodies_are_400(hub, framing):
    status, _ = _raw(hub, _post("/api/repos/create", "Transfer-Encoding: chunked"), framing)
    assert status == 400
    _still_serving(hub)


def test_chunked_total_over_the_cap_is_413(hub):
    status, _ = _raw(hub, _post("/api/repos/create", "Transfer-Encoding: chunked"), b"7fffffff\r\n" + b"a" * 100)
    assert status == 413
    _still_serving(hub)


def test_both_framings_or_an_unknown_encoding_are_400(hub):
    both = _post("/api/repos/create", "Transfer-Encoding: chunked", "Content-Length: 5")
    assert _raw(hub, both, b"0\r\n\r\n")[0] == 400
    assert _raw(hub, _post("/api/repos/create", "Transfer-Encoding: gzip"), b"")[0] == 400
    _still_serving(hub)


def test_a_valid_chunked_body_still_works(hub):
    payload = json.dumps({"name": "chunky"}).encode()
    framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    status, body = _raw(hub, _post("/api/repos/create", "Transfer-Encoding: chunked"), framed)
    assert status == 200 and json.loads(body)["name"] == "user/chunky"


def _json_post(hub, path: str, body: bytes) -> tuple[int, dict]:
    status, data = _raw(hub, _post(path, f"Content-Length: {len(body)}", "Connection: close"), body)
    return status, json.loads(data)


@pytest.mark.parametrize("path,body", [
    ("/api/repos/create", b"[1, 2]"),
    ("/api/repos/create", b"null"),
    ("/api/repos/create", b'{"name": ["x"]}'),
    ("/api/repos/create", b'{"name": "x", "organization": 5}'),
    ("/api/repos/create", b"\xff\xfe"),
    ("/api/models/user/demo/preupload/main", b'{"files": 5}'),
    ("/api/models/user/demo/preupload/main", b'{"files": [1]}'),
    ("/api/models/user/demo/preupload/main", b'"text"'),
    ("/api/models/user/demo/commit/main", b"[]"),
    ("/api/models/user/demo/commit/main", b'{"key": "header", "value": []}'),
    ("/api/models/user/demo/commit/main", b'{"key": "header", "value": {"summary": 3}}'),
    ("/api/models/user/demo/commit/main", b'{"key": "header", "value": {}}\n7\n'),
    ("/api/models/user/demo/commit/main", b'{"key": "header", "value": {}}\n{"key": "file", "value": 7}\n'),
    ("/api/models/user/demo/commit/main",
     b'{"key": "header", "value": {}}\n{"key": "file", "value": {"path": "a", "content": 7}}\n'),
    ("/api/models/user/demo/commit/main",
     b'{"key": "header", "value": {}}\n{"key": "file", "value": {"path": "a", "content": "!!notb64"}}\n'),
])
def test_json_of_the_wrong_shape_is_400_not_a_dropped_connection(hub, path, body):
    assert _json_post(hub, "/api/repos/create", b'{"name": "demo"}')[0] == 200
    status, payload = _json_post(hub, path, body)
    assert status == 400, payload
    assert "error" in payload
    assert hub.commits("user/demo") == ["initial commit"]
    _still_serving(hub)


@pytest.mark.parametrize("bad", ["../../x", "/abs", "a/../b", "a//b", "./a", "a/.", "C:/x", "a\\b", "a\nb", "",
                                 "x" * 2000])
def test_commit_paths_are_validated(hub, bad):
    assert _json_post(hub, "/api/repos/create", b'{"name": "demo"}')[0] == 200
    header = {"key": "header", "value": {"summary": "attack"}}
    for key, value in [("file", {"path": bad, "content": base64.b64encode(b"pwn").decode()}),
                       ("deletedFile", {"path": bad}), ("deletedFolder", {"path": bad})]:
        body = "\n".join(json.dumps(line) for line in (header, {"key": key, "value": value})).encode()
        status, payload = _json_post(hub, "/api/models/user/demo/commit/main", body)
        assert status == 400 and "Invalid path" in payload["error"], (key, payload)
    status, payload = _json_post(hub, "/api/models/user/demo/preupload/main",
                                 json.dumps({"files": [{"path": bad}]}).encode())
    assert status == 400
    assert set(hub.files("user/demo")) == {".gitattributes"}
    # and a good nested path is still accepted
    good = {"key": "file", "value": {"path": "sub/ok.txt", "content": base64.b64encode(b"ok").decode()}}
    body = "\n".join(json.dumps(line) for line in (header, good)).encode()
    assert _json_post(hub, "/api/models/user/demo/commit/main", body)[0] == 200
    assert hub.files("user/demo")["sub/ok.txt"] == b"ok"


def test_check_repo_path_accepts_what_the_hub_accepts():
    for good in ["a", "sub/b.bin", ".gitattributes", "a..b/c", "deep/er/still.safetensors"]:
        assert check_repo_path(good) == good
