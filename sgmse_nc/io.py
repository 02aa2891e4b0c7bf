"""Writing outputs safely: atomic writes, one leftover pattern, write-only-if-changed, parameter markers.

Every output of the package (wavs, manifests, tables, plots, markers) is written through `atomic_path`:
a temporary file in the destination folder, flushed to disk, then renamed onto the final name, so an
interrupted run leaves either the old file or the new one, never half a file. An interrupted write may
leave its temporary file behind; all of them match one pattern (`is_leftover`), so a resumed run can
recognise and remove them. The temporary file is created like any other file, so the final file gets the
permissions the user's umask gives (not `mkstemp`'s 0600). `write_csv` writes a table that way, and
`input_holding` finds the input folder an output folder would lie in (never write there).
"""
from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from sgmse_nc.errors import UserError

# ".<final name>.<8 hex>.tmp<final suffix>": hidden, names its target, keeps the suffix for writers that
# infer the format from it.
_LEFTOVER = re.compile(r"\..+\.[0-9a-f]{8}\.tmp(\.[^.]*)?")


def temp_name(path) -> Path:
    """A fresh name of the leftover pattern beside `path` (the file is not created)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")


def is_leftover(path) -> bool:
    """True for the temporary file of an interrupted atomic write."""
    return _LEFTOVER.fullmatch(Path(path).name) is not None


def remove_leftovers(folder, recursive: bool = True) -> int:
    """Delete the temporary files interrupted atomic writes left under `folder`; return how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    leftovers = [p for p in (folder.rglob("*") if recursive else folder.iterdir()) if p.is_file() and is_leftover(p)]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


class DiskWriteError(UserError):
    """A write the file system refused (full, over quota, read-only, not permitted). The previous file is kept and
    no temporary file is left; the message names the path, the free space and what the write needed."""


# errno -> what the user is told; every other OSError is not the disk's doing and keeps its own message
DISK_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted", errno.EFBIG: "file too large for this file system"}
FULL_DISK_BYTES = 1 << 20  # a writer failing with less free than this ran out of space (libsndfile and torch's
#                            zip writer report a full disk without its errno)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _free_bytes(folder: Path) -> int | None:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_write_error(path: Path, err: BaseException, written: int = 0) -> DiskWriteError | None:
    """The DiskWriteError a failed write of `path` amounts to (None when the disk is not the cause).
    written: bytes the writer got into the file before it failed (what the file needs, at least)."""
    free = _free_bytes(path.parent)
    code = getattr(err, "errno", None)
    if code not in DISK_ERRORS:
        if isinstance(err, OSError) or free is None or free >= FULL_DISK_BYTES:
            return None
        code = errno.ENOSPC
    space = f"{_size(free)} free there" if free is not None else "free space unknown"
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        need = f", the file needs more than the {_size(written)} written before the failure" if written else ""
        fix = "Free space there (or write elsewhere)"
    else:
        need, fix = "", f"Make {path.parent} writable (or write elsewhere)"
    return DiskWriteError(f"{path}: cannot be written ({DISK_ERRORS[code]}; {space}{need}). The previous file is "
                          f"kept and nothing half-written is left. {fix}, then rerun the same command: it resumes "
                          f"where it stopped.")


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; once the block succeeds, the file written there is synced and
    renamed onto `path`. On any error the temporary file is removed and `path` is left as it was; a failure the
    disk caused (full, read-only, no permission) becomes one DiskWriteError naming the path and the space."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            tmp = temp_name(path)
            try:  # created with mode 0o666 minus the umask, as open() would; O_EXCL: never reuse a name
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                continue
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the rename makes it visible
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except Exception as err:
        written = tmp.stat().st_size if tmp is not None and tmp.is_file() else 0
        problem = disk_write_error(path, err, written)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if problem is None:
            raise
        raise problem from err
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")


def write_csv(table, path) -> None:
    """A pandas DataFrame as CSV without its index, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def input_holding(out_dir, inputs: Mapping[str, Path | None]) -> tuple[str, Path] | None:
    """(name, folder) of the first of `inputs` that `out_dir` lies in or is, None when outside them all (a folder
    of None is skipped). Outputs there could overwrite inputs, and a rerun's scan would take them as inputs."""
    out = Path(out_dir).resolve()
    for name, folder in inputs.items():
        if folder is not None and out.is_relative_to(Path(folder).resolve()):
            return name, Path(folder)
    return None


def write_text_if_changed(path, text: str) -> bool:
    """Atomic write, skipped when the file already holds `text` (a rerun touches nothing); True if written."""
    path = Path(path)
    if path.is_file() and path.read_bytes() == text.encode("utf-8"):
        return False
    write_text_atomic(path, text)
    return True


def write_json(path, data) -> bool:
    """`data` as indented, key-sorted JSON, written only if it changed; True if written."""
    return write_text_if_changed(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------- parameter markers
# A folder made by a run with some parameters holds a JSON marker recording them; a later run with other
# parameters is refused before anything is written, so outputs of different settings never mix.

def read_json(path, error: type[Exception] = ValueError) -> dict | None:
    """The parsed JSON file, or None when there is none; an unreadable file raises `error` naming it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise error(f"{path}: unreadable marker ({err}). Delete {path.parent} to rebuild it, "
                    f"or choose another output folder.") from None


def param_differences(saved: Mapping, asked: Mapping) -> list[str]:
    """'key: <saved> -> <asked>' for every key whose value differs, sorted by key."""
    return [f"{key}: {saved.get(key)!r} -> {asked.get(key)!r}"
            for key in sorted(saved.keys() | asked.keys()) if saved.get(key) != asked.get(key)]


def refuse_other_params(marker, params: Mapping, fix: str, error: type[Exception] = ValueError,
                        key: str | None = "params") -> dict | None:
    """The record in `marker` (None when there is none); raises `error` when it was made with other
    `params` (the record's `key` entry, or the whole record when `key` is None), naming what differs."""
    marker = Path(marker)
    record = read_json(marker, error)
    if record is None:
        return None
    saved = record if key is None else record.get(key, {})
    differences = param_differences(saved, params)
    if differences:
        raise error(f"{marker.parent} was made with other parameters ({'; '.join(differences)}), "
                    f"recorded in {marker.name}. Nothing was written. {fix}")
    return record
