"""Run a command with a planted write fault (not a test module):

    python tests/scripts/with_write_fault.py ENOSPC '*.wav' 2 enhance.py --ckpt ... --out ...

From the 2nd atomic write (sgmse_nc.io.atomic_path) of a file matching the pattern on, each fails as a full
(ENOSPC), read-only (EROFS) or forbidden (EACCES) disk would: the data is written, then finishing it raises
OSError. SIGKILL instead kills the process in the middle of that write (half of the data written). The command
then runs as its entry point does."""
import errno
import fnmatch
import os
import runpy
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import sgmse_nc.io as io  # noqa: E402  (patched before any module imports atomic_path by name)

code, pattern, first, script, *args = sys.argv[1:]
real_atomic_path, count = io.atomic_path, [0]


@contextmanager
def failing_atomic_path(path):
    with real_atomic_path(path) as tmp:
        yield tmp
        if fnmatch.fnmatch(Path(path).name, pattern):
            count[0] += 1
            if count[0] >= int(first) and code == "SIGKILL":
                os.truncate(tmp, os.path.getsize(tmp) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            if count[0] >= int(first):
                raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))


io.atomic_path = failing_atomic_path
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
