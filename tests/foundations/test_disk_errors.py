"""A write the disk refuses (full, read-only, no permission) leaves the previous file whole and no temporary file,
and is one DiskWriteError naming the path and the space; other failures keep their own error."""
from __future__ import annotations

import errno
import os
import shutil

import pytest

from sgmse_nc.io import DiskWriteError, atomic_path, write_text_atomic


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name != "out.txt")


@pytest.mark.parametrize("code, said", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only file system"),
                                        (errno.EACCES, "permission denied"), (errno.EDQUOT, "disk quota exceeded")])
def test_refused_write_keeps_the_previous_file(tmp_path, code, said):
    path = tmp_path / "out.txt"
    write_text_atomic(path, "previous")
    with pytest.raises(DiskWriteError, match=f"{path}: cannot be written \\({said}.*; .* free there") as caught:
        with atomic_path(path) as tmp:
            tmp.write_text("half of the new cont")
            raise OSError(code, os.strerror(code))
    assert path.read_text() == "previous" and leftovers(tmp_path) == []
    assert ("needs more than the 20 B written" in str(caught.value)) == (code in (errno.ENOSPC, errno.EDQUOT))
    assert "rerun the same command" in str(caught.value)


def test_temporary_file_refused_by_a_read_only_folder(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(DiskWriteError, match="read-only file system.*Make .* writable"):
        write_text_atomic(tmp_path / "out.txt", "new")
    assert list(tmp_path.iterdir()) == []


def test_writer_without_errno_on_a_full_disk(tmp_path, monkeypatch):
    """libsndfile and torch's zip writer report a full disk as a bare RuntimeError: the free space decides."""
    path = tmp_path / "out.txt"
    write_text_atomic(path, "previous")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=0))
    with pytest.raises(DiskWriteError, match="no space left on the device; 0 B free"):
        with atomic_path(path):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert path.read_text() == "previous" and leftovers(tmp_path) == []
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10 << 30))
    with pytest.raises(RuntimeError, match="enforce fail"):  # with space free it is the writer's own problem
        with atomic_path(path):
            raise RuntimeError("[enforce fail at inline_container.cc:672]")
    with pytest.raises(OSError, match="Bad file descriptor"):  # an OSError that is not the disk's: unchanged
        with atomic_path(path):
            raise OSError(errno.EBADF, "Bad file descriptor")
    assert path.read_text() == "previous" and leftovers(tmp_path) == []
