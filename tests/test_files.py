"""bdlib.runtime.files: outputs checked before the work, written atomically as a group, never over an input."""

from __future__ import annotations

import errno
import os

import pytest

from bdlib.runtime.files import OutputError, check_writable, refuse_overwriting, same_file, write_files, write_text


def _full_disk_after(nbytes: int):
    """A writer that writes ``nbytes`` and then fails as a full disk does."""

    def writer(path):
        path.write_bytes(b"x" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device")

    return writer


def test_a_group_is_written_whole_and_keeps_the_folder_clean(tmp_path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "sub" / "b.txt"
    assert write_files({a: lambda p: p.write_text("A"), b: lambda p: p.write_text("B")}) == [a, b]
    assert (a.read_text(), b.read_text()) == ("A", "B")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "b.txt", "sub"]  # no temporary files left
    assert a.stat().st_mode & 0o777 == 0o666 & ~_umask()  # the permissions of a normally created file


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_full_disk_changes_no_existing_file(tmp_path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"old A")
    b.write_bytes(b"old B")
    with pytest.raises(OutputError, match=r"could not write .*b\.png: the disk is full \(No space left .*\); no"):
        write_files({a: lambda p: p.write_bytes(b"new A"), b: _full_disk_after(10)})
    assert (a.read_bytes(), b.read_bytes()) == (b"old A", b"old B")  # not even a, whose new copy was complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_an_interrupted_write_leaves_nothing_behind(tmp_path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")

    def interrupted(path):
        path.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_files({target: interrupted})
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_check_writable_refuses_folders_files_as_folders_and_read_only_places(tmp_path) -> None:
    assert check_writable(tmp_path / "new" / "deeper" / "out.png") == tmp_path / "new" / "deeper" / "out.png"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(OutputError, match="is a folder"):
        check_writable(tmp_path)
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_writable(tmp_path / "plain" / "out.png")
    assert [p.name for p in tmp_path.iterdir()] == ["plain"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_check_writable_tries_for_real() -> None:
    # /proc takes no new files even from root, for whom permission bits (and os.access) say yes
    with pytest.raises(OutputError, match="does not accept new files"):
        check_writable("/proc/bdlib-test/out.png")


def test_outputs_never_replace_inputs(tmp_path) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(b"input")
    (tmp_path / "link.png").symlink_to(image)
    os.link(image, tmp_path / "hard.png")
    for output in (image, tmp_path / "link.png", tmp_path / "hard.png", tmp_path / "." / "in.png"):
        assert same_file(output, image)
        with pytest.raises(OutputError, match="would overwrite the input --image"):
            refuse_overwriting([tmp_path / "other.png", output], {"--image": image})
    refuse_overwriting([tmp_path / "new.png"], {"--image": image})  # no error
    assert not same_file(tmp_path / "missing.png", image)


def test_write_text_replaces_atomically(tmp_path) -> None:
    path = tmp_path / "t.md"
    write_text(path, "one")
    write_text(path, "two")
    assert path.read_text() == "two"
