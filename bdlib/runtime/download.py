"""Explicit, resumable downloads checked against SHA-256.

Nothing in bdlib downloads at import time or in tests: a download happens only when a user asks for it
(``python -m bdlib download paper``). This module is the one place that talks to the network, with the
standard library's :mod:`urllib` only.

How :func:`download` keeps the user's files safe:

1. Bytes go to ``<dest>.part`` (``dest.with_suffix(dest.suffix + ".part")``), never to ``dest``.
2. If a ``.part`` file is already there (an earlier, interrupted run), the download resumes with an HTTP
   ``Range: bytes=<size>-`` request. A server that ignores ``Range`` answers ``200`` with the whole
   file: the partial file is then truncated and the download restarts from byte 0. A partial file that
   cannot be a prefix (longer than the known size, or refused with ``416``) is deleted and restarted.
   A connection that closes early is resumed at once (``retries`` times); a server that stalls for
   ``timeout`` seconds is not retried: the call fails, keeping the partial file for the next run.
3. When the body is complete, its SHA-256 (and byte size, when known) is checked. A body whose length
   was never announced (no ``Content-Length``, no known size) may have been cut: if it does not match,
   the rest is asked for once before the file is judged. Only a verified file is moved onto ``dest``, with
   :func:`os.replace` (atomic on one file system). An existing ``dest`` is therefore never touched before a
   verified replacement exists.
4. A failed check deletes nothing the user had: the bad bytes (which we downloaded) are renamed to
   ``<dest>.corrupt`` for inspection, replacing an older ``.corrupt`` file, so the next run starts from
   scratch instead of resuming bad data; a later verified download removes it. The error names the
   expected and actual hash and what to do.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

DEFAULT_CHUNK_SIZE = 1 << 20  # 1 MiB per read
DEFAULT_TIMEOUT = 30.0  # seconds without data before a read fails (a stalled server is not retried)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_CONTENT_RANGE_416 = re.compile(r"bytes\s+\*/(\d+)")


class ChecksumError(ValueError):
    """The downloaded bytes are not the expected file (wrong SHA-256 or wrong size)."""


class IncompleteDownloadError(ConnectionError):
    """The connection ended before the whole file arrived; the partial file is kept for resuming."""


def sha256_of(path: str | os.PathLike[str], chunk_size: int = DEFAULT_CHUNK_SIZE) -> str:
    """Return the SHA-256 hex digest (lowercase) of a file, read in chunks of ``chunk_size`` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


_verified: dict[tuple[Path, str], tuple[int, int]] = {}  # (file, sha256) -> (size, mtime_ns) when it matched


def verified_sha256(path: str | os.PathLike[str], sha256: str) -> str | None:
    """Check ``path`` against ``sha256``: None if it matches, else the file's actual digest.

    A match is remembered for the process (keyed by size and modification time), so a large file is hashed
    once however often it is loaded.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = (path, sha256.lower())
    if _verified.get(key) == (stat.st_size, stat.st_mtime_ns):
        return None
    actual = sha256_of(path)
    if actual != key[1]:
        return actual
    _verified[key] = (stat.st_size, stat.st_mtime_ns)
    return None


def part_path(dest: Path) -> Path:
    """The partial file a download of ``dest`` writes to: ``<dest>.part``."""
    return dest.with_suffix(dest.suffix + ".part")


def corrupt_path(dest: Path) -> Path:
    """Where bytes that failed verification are kept: ``<dest>.corrupt``."""
    return dest.with_suffix(dest.suffix + ".corrupt")


def _normalise_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not _HEX64.fullmatch(value):
        raise ValueError(f"sha256 must be 64 hexadecimal characters, got {sha256!r}")
    return value


def _check_file(path: Path, sha256: str | None, size: int | None) -> tuple[bool, str, int]:
    """Return (matches, actual_sha256, actual_size) of ``path`` against the expected values."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return False, "(not computed: wrong size)", actual_size
    actual = sha256_of(path)
    return (sha256 is None or actual == sha256), actual, actual_size


def _open(url: str, start: int, timeout: float):
    """Open ``url``, asking for the bytes from ``start`` on when ``start > 0``."""
    headers = {"User-Agent": "bdlib-download", "Accept-Encoding": "identity"}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _is_timeout(error: BaseException) -> bool:
    """A read or connect timeout (the server stalled), however urllib wraps it."""
    return isinstance(error, TimeoutError) or (
        isinstance(error, urllib.error.URLError) and isinstance(error.reason, TimeoutError)
    )


def _fetch_once(url: str, part: Path, *, size: int | None, chunk_size: int, timeout: float, progress: bool) -> bool:
    """Append the rest of ``url`` to ``part`` (resuming or restarting); raise if the body is cut short.

    Returns True when the length of the whole file was known (``size``, or the server's Content-Length or
    Content-Range), so that a cut was checked for; False when the body simply ended (no length announced).
    """
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416 or start == 0:
            raise
        # 416 Range Not Satisfiable: nothing from byte `start` on. If the server says the file has exactly
        # `start` bytes, the partial file is complete; otherwise it is not a prefix (stale or oversized): it is
        # a file we made, so we drop it and start again.
        match = _CONTENT_RANGE_416.fullmatch((error.headers.get("Content-Range") or "").strip())
        if match is not None and int(match.group(1)) == start:
            return True
        part.unlink()
        start = 0
        response = _open(url, 0, timeout)
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        if status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None or int(match.group(1)) != start:
                part.unlink()  # cannot resume safely: drop our partial file, the next attempt restarts
                raise IncompleteDownloadError(
                    f"the server answered the resume request for {url} with an unexpected range "
                    f"{response.headers.get('Content-Range')!r}; restarting from the beginning"
                )
            total = None if match.group(3) == "*" else int(match.group(3))
            mode = "ab"
        else:  # 200: the server sent the whole file (it ignored Range, or we did not ask)
            start = 0
            total = int(length) if length is not None else None
            mode = "wb"
        total = total if total is not None else size
        received = 0
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while block := response.read(chunk_size):
                out.write(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and start + received < total:
        raise IncompleteDownloadError(
            f"connection to {url} closed after {start + received} bytes of {total}; the partial file {part} "
            "is kept and the next run resumes it"
        )
    return total is not None


def download(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None,
    *,
    size: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 3,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` resumably and return ``dest`` once its content is verified.

    Args:
        url: the file's address (``http``, ``https`` or ``file``).
        dest: where the verified file ends up; its folder is created.
        sha256: the expected SHA-256 hex digest, or ``None`` when none is published. Then only ``size``
            (if given) is checked and the computed digest is printed so that users can pin it.
        size: the expected size in bytes, if known (checked before hashing).
        chunk_size: bytes per read.
        timeout: seconds to wait for the connection or for the next bytes.
        retries: how many times a cut connection is resumed within this call before giving up (the
            partial file stays either way, so running again later resumes it).
        progress: show a tqdm progress bar and print the digest of unpinned files.

    An existing ``dest`` that matches ``sha256`` is returned without any network access. An existing
    ``dest`` with no ``sha256`` to check is returned as it is. See the module docstring for resuming and
    for what happens on a failed check (:class:`ChecksumError`, a ``ValueError``).
    """
    dest = Path(dest).expanduser()
    sha256 = _normalise_sha256(sha256)
    if dest.is_file():
        if sha256 is None:
            return dest
        if _check_file(dest, sha256, size)[0]:
            return dest
        # A different (old or damaged) file: fetch a verified replacement next to it; dest stays.
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    if size is not None and part.exists() and part.stat().st_size > size:
        part.unlink()  # longer than the file can be: not a prefix of it
    fetch = dict(size=size, chunk_size=chunk_size, timeout=timeout, progress=progress)
    length_known = size is not None
    for attempt in range(retries + 1):
        if size is not None and part.exists() and part.stat().st_size == size:
            break  # complete already (an earlier run stopped before verifying)
        try:
            length_known = _fetch_once(url, part, **fetch)
            break
        except urllib.error.HTTPError:
            raise  # a definite answer from the server (404, 403, ...): retrying will not help
        except (TimeoutError, ConnectionError, urllib.error.URLError, http.client.HTTPException) as error:
            if attempt == retries or _is_timeout(error):  # a stalled server: fail now, the next run resumes
                raise
    ok, actual, actual_size = _check_file(part, sha256, size)
    if not ok and not length_known:
        # No length was announced, so a cut connection looked like the end of the file: ask for the bytes after
        # it. A server that has none (416 with this length, or an empty answer) confirms the file is complete.
        _fetch_once(url, part, **fetch)
        ok, actual, actual_size = _check_file(part, sha256, size)
    if not ok:
        bad = corrupt_path(dest)
        os.replace(part, bad)
        expected_size = f"{size} bytes" if size is not None else "unknown size"
        raise ChecksumError(
            f"downloaded {url} does not match: expected sha256 {sha256 or '(none pinned)'} "
            f"({expected_size}), got sha256 {actual} ({actual_size} bytes). "
            f"The bad bytes were moved to {bad}; {dest} was left untouched. Run the download again; "
            "if it fails the same way, the file on the server has changed: check its source and, if "
            "you trust it, update the pinned checksum."
        )
    os.replace(part, dest)
    corrupt_path(dest).unlink(missing_ok=True)  # bad bytes of an earlier attempt: a verified file replaced them
    if sha256 is None and progress:
        print(
            f"{dest.name}: sha256 {actual} ({actual_size} bytes) - no checksum is pinned for this "
            "file; record this value to pin it",
            file=sys.stderr,
        )
    return dest
