"""One writer per folder: a lock file naming the process that writes a run folder, an enhance --out or a report.

`folder_lock(folder, "training")` writes `<folder>/.sgmse_nc.lock` (pid, host, boot id, process start time,
SLURM job id, command, start time) and removes it when the block ends. A second process pointed at the same
folder is refused at start with one line (FolderBusy) naming the folder and the holder. Taken over instead:
a lock whose process is gone (same host: the pid is dead, was reused, or the machine rebooted since), a lock of
this very process, and a lock of the same SLURM job id (a requeued job). A lock from another host cannot be
checked: the message says to delete it if that process is gone.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sgmse_nc.errors import UserError
from sgmse_nc.io import write_text_atomic

LOCK_NAME = ".sgmse_nc.lock"


class FolderBusy(UserError):
    """Another process is writing this folder."""


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    """The process's start time (clock ticks after boot): with the pid, it names one process for good."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _record(what: str) -> dict:
    return {"what": what, "pid": os.getpid(), "host": socket.gethostname(), "boot_id": _boot_id(),
            "process_start": _start_ticks(os.getpid()), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv)[:300]}


def _alive(holder: dict) -> bool | None:
    """Whether the holder still runs: True / False on this host, None on another host (cannot tell)."""
    if holder.get("host") != socket.gethostname():
        return None
    if holder.get("boot_id") and holder.get("boot_id") != _boot_id():
        return False  # the machine rebooted since
    pid = int(holder.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    started = holder.get("process_start")
    return started is None or _start_ticks(pid) in (None, started)  # a reused pid is another process


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # torn or foreign: treated as a lock nobody can be shown to hold


def _is_me(holder: dict) -> bool:
    return (holder.get("host") == socket.gethostname() and int(holder.get("pid", -1)) == os.getpid()
            and holder.get("process_start") == _start_ticks(os.getpid()))


def _takeable(holder: dict) -> bool:
    job = os.environ.get("SLURM_JOB_ID")
    return (not holder or _is_me(holder) or (job is not None and holder.get("slurm_job_id") == job)
            or _alive(holder) is False)


def acquire(folder, what: str) -> dict:
    """Take the folder's lock for this process (FolderBusy when another live process holds it); its record."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path, me = folder / LOCK_NAME, _record(what)
    try:  # the common case, atomic even on network file systems: no lock there yet
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))
        return me
    except FileExistsError:
        pass
    holder = _read(path)
    if holder is not None and not _takeable(holder):
        raise FolderBusy(busy_message(folder, holder))
    write_text_atomic(path, json.dumps(me))  # a stale lock: replaced in one rename
    holder = _read(path)
    if holder != me:  # another process took it over in the same instant
        raise FolderBusy(busy_message(folder, holder or {}))
    return me


def release(folder, record: dict) -> None:
    """Remove the folder's lock if it is still `record`'s (a requeued job may have taken it over)."""
    path = Path(folder) / LOCK_NAME
    if _read(path) == record:
        path.unlink(missing_ok=True)


def busy_message(folder: Path, holder: dict) -> str:
    who = (f"{holder.get('what', 'a command')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
           f"started {holder.get('started', '?')}: {holder.get('command', '?')})")
    gone = ("" if _alive(holder) else
            f" If that process is gone (its machine cannot be checked from here), delete {folder / LOCK_NAME}.")
    return (f"{folder} is in use by {who}: two writers would mix or overwrite each other's files, so nothing was "
            f"done. Wait for it to finish or stop it, or choose another folder.{gone}")


@contextmanager
def folder_lock(folder, what: str) -> Iterator[dict]:
    """Hold the folder's lock for the block (see the module docstring). A folder the lock had to create is
    removed again if the block left it empty (a run refused later leaves nothing behind)."""
    created = not Path(folder).exists()
    record = acquire(folder, what)
    try:
        yield record
    finally:
        release(folder, record)
        if created:
            try:
                Path(folder).rmdir()
            except OSError:
                pass  # not empty: the block wrote there
