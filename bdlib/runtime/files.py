"""Writing output files safely: checked before the work, written atomically, never over an input.

Every file a bdlib command writes (edited images, figures, reports, exported weights, checkpoints) goes
through this module, so that a failure at any point loses nothing:

1. :func:`check_writable` runs *before* the work: the destination must not be a folder, its name and the longer
   name of its temporary file (step 3) must fit the file system (:func:`check_name_length`), and its folder (or
   the nearest folder that exists, if it is to be created) must accept a new file. It tries that by creating
   and removing a small probe file, which also catches read-only file systems and missing permissions.
2. :func:`refuse_overwriting` compares resolved paths (symbolic links followed, hard links detected), so an
   output can never replace one of the command's inputs.
3. :func:`write_files` writes each file to a temporary file in its own folder (``.NAME-XXXX.partial.EXT``),
   flushes it to disk, and only when *every* file of the group is complete renames them into place with
   :func:`os.replace` (atomic on one file system). On any failure (a full disk, Ctrl-C, a bug) the temporary
   files are removed and the existing files stay as they were: never half-written, never destroyed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

Writer = Callable[[Path], object]  # writes one complete file at the path it is given
_RANDOM_CHARS = 8  # the random part of a name from tempfile.mkstemp
_DEFAULT_NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems


class OutputError(ValueError):
    """An output cannot be written (its folder is not writable, the disk is full, ...); nothing was changed."""


def _default_mode() -> int:
    """The permission bits of a newly created file (``0o666`` less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _existing_ancestor(folder: Path) -> Path:
    """The nearest folder at or above ``folder`` that exists (``folder`` itself when it exists)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return Path(folder.anchor or ".")


def check_folder_writable(folder: str | os.PathLike[str], what: str) -> None:
    """Raise :class:`OutputError` unless a new file can be created in ``folder`` (or, if it does not exist yet,
    in the nearest existing folder above it, where it would be created). ``what`` names the output in the message.

    Tried for real: a small probe file is created and removed, which also catches read-only file systems.
    """
    base = _existing_ancestor(Path(folder).expanduser())
    if not base.is_dir():
        raise OutputError(f"cannot write {what}: {base} is a file, not a folder; choose another path")
    try:
        probe, name = tempfile.mkstemp(dir=base, prefix=".bdlib-probe-")
        os.close(probe)
        os.unlink(name)
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputError(
            f"cannot write {what}: {base} does not accept new files ({reason}); choose a writable folder "
            "(nothing was written)"
        ) from None


def _staged_affixes(path: Path) -> tuple[str, str]:
    """The prefix and suffix of ``path``'s temporary file (:func:`_staged`), around ``tempfile``'s random part."""
    return f".{path.stem}-", f".partial{path.suffix}"


def _name_max(folder: Path) -> int:
    """The longest file name, in bytes, that ``folder``'s file system takes (255 where it does not say)."""
    try:
        return int(os.pathconf(_existing_ancestor(folder), "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or the name is unknown
        return _DEFAULT_NAME_MAX


def check_name_length(path: str | os.PathLike[str], what: str = "output") -> None:
    """Raise :class:`OutputError` if ``path``'s name, or the longer name of the temporary file it is first written
    as (:func:`write_files`), is longer than its file system takes; the message says by how much to shorten it."""
    path = Path(path).expanduser()
    prefix, suffix = _staged_affixes(path)
    staged = len(os.fsencode(prefix + suffix)) + _RANDOM_CHARS
    limit = _name_max(path.parent)
    if staged > limit:
        over = staged - limit
        shown = path.name if len(path.name) <= 40 else f"{path.name[:20]}...{path.name[-16:]}"
        raise OutputError(
            f"the {what} name {shown} is too long: {len(os.fsencode(path.name))} bytes, and "
            f"bdlib first writes it under a temporary name {staged - len(os.fsencode(path.name))} bytes longer, which "
            f"this file system's limit of {limit} cannot take: shorten it by {over} character{'s' * (over > 1)}"
        )


def check_writable(path: str | os.PathLike[str], what: str = "output", example: str = "result.png") -> Path:
    """Return ``path`` if a file can be written there; raise :class:`OutputError` naming the problem if not.
    ``example`` is the file name suggested when ``path`` is a folder.

    Nothing is left behind: a missing folder is not created (its nearest existing ancestor is probed instead).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"the {what} {path} is a folder: give a file name (e.g. {path / example})")
    check_name_length(path, what)
    check_folder_writable(path.parent, f"the {what} {path}")
    return path


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True if ``a`` and ``b`` name the same file: equal resolved paths, or the same file through a hard link."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: then they cannot be the same file
        return False


def refuse_overwriting(outputs: Iterable[str | os.PathLike[str]], inputs: Mapping[str, str | os.PathLike[str]]):
    """Raise :class:`OutputError` if an output would replace an input; ``inputs`` maps a label (``"--image"``)
    to a path (non-path inputs, such as arrays, are simply not listed)."""
    for output in outputs:
        for label, source in inputs.items():
            if same_file(output, source):
                raise OutputError(
                    f"the output {output} would overwrite the input {label} {source}: choose another output name"
                )


def _fsync(path: Path) -> None:
    """Push ``path``'s bytes to the disk, so that a rename never exposes a file whose content is still cached."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _staged(path: Path) -> Path:
    """A new, empty temporary file next to ``path`` that keeps its extension (writers infer formats from it)."""
    prefix, suffix = _staged_affixes(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    os.close(handle)
    return Path(name)


def describe_os_error(error: OSError) -> str:
    """A short reason for a failed write: "the disk is full" for ENOSPC (and a quota for EDQUOT), else the system's
    own words."""
    if error.errno == errno.ENOSPC:
        return "the disk is full (No space left on device)"
    if error.errno == getattr(errno, "EDQUOT", None):
        return "the disk quota is exceeded (Disk quota exceeded)"
    return error.strerror or str(error)


def write_files(writers: Mapping[str | os.PathLike[str], Writer]) -> list[Path]:
    """Write a group of files atomically: ``writers[path](tmp)`` writes the whole file to ``tmp``; once all of
    them succeeded, every ``tmp`` is renamed onto its ``path``. Returns the paths, in order.

    On any exception nothing is renamed, the temporary files are removed, and an ``OSError`` (full disk,
    permissions) becomes an :class:`OutputError` that names the file; other exceptions propagate unchanged.
    """
    staged: list[tuple[Path, Path]] = []
    current = None
    try:
        for target, writer in writers.items():
            current = Path(target).expanduser()
            current.parent.mkdir(parents=True, exist_ok=True)
            tmp = _staged(current)
            staged.append((tmp, current))
            writer(tmp)
            _fsync(tmp)
            os.chmod(tmp, current.stat().st_mode & 0o7777 if current.exists() else _default_mode())
        for tmp, target in staged:
            os.replace(tmp, target)
    except OSError as error:
        raise OutputError(
            f"could not write {current}: {describe_os_error(error)}; no existing file was changed (free some space "
            "or choose another folder, then run again)"
        ) from error
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return [target for _, target in staged]


def write_file(path: str | os.PathLike[str], writer: Writer) -> Path:
    """Write one file atomically (:func:`write_files` with one entry)."""
    return write_files({path: writer})[0]


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
