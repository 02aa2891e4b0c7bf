"""How many CPU threads torch may use: 1 by default, or the cores free right now ("auto").

On a shared machine, two intra-op threads competing with other processes for two cores run several times
slower than one thread (the team measured 7-10x), so nothing here takes cores that are busy.
"""
from __future__ import annotations

import logging
import os

import torch

from sgmse_nc.errors import OptionError

log = logging.getLogger(__name__)


def free_cores() -> int:
    """The cores this process may use, less the other runnable processes (1-minute load average); >= 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0]
    except OSError:  # no load average on this platform: assume busy
        return 1
    return max(1, min(cores, int(cores - busy + 0.5)))


def set_threads(threads: int | str = 1) -> int:
    """Set torch's intra-op threads to `threads` (an int >= 1, or "auto" = free_cores()); returns the number."""
    if threads == "auto":
        n = free_cores()
    elif isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1:
        n = threads
    else:
        raise OptionError(f"threads={threads!r}: give a number of threads >= 1, or auto (the cores free now).")
    torch.set_num_threads(n)
    log.info("torch threads: %d%s", n, " (cores free now)" if threads == "auto" else "")
    return n
