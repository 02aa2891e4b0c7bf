"""What every entry point (train / enhance / evaluate / prepare) shares: one `error: ...` line with exit
status 2 for the project's own errors (sgmse_nc.errors.UserError, also when wrapped by Hydra), a short note
and status 130 on Ctrl-C, and an argument parser whose errors are the same one line. Unexpected exceptions
keep their traceback."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from sgmse_nc.errors import Interrupted, find_user_error

USER_ERROR = 2  # also what argparse uses for a bad command line
INTERRUPTED = 130  # the shell's status for a run stopped by Ctrl-C (128 + SIGINT)


def report_error(err: BaseException) -> int | None:
    """Print a user error or an interruption as one line and return the exit status; None for a bug."""
    user = find_user_error(err)
    if isinstance(user, Interrupted) or (user is None and isinstance(err, KeyboardInterrupt)):
        print(f"interrupted: {user or 'stopped before anything was finished.'}", file=sys.stderr)
        return INTERRUPTED
    if user is not None:
        print(f"error: {' '.join(str(user).split())}", file=sys.stderr)  # one line, whatever the message
        return USER_ERROR
    return None


def run_main(main: Callable[..., int | None], *args) -> int:
    """main(*args) -> exit status, with the project's errors reported as one line (see `report_error`)."""
    try:
        return main(*args) or 0
    except (Exception, KeyboardInterrupt) as err:
        status = report_error(err)
        if status is None:
            raise
        return status


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's one-line `error: ...` (status 2) instead of usage + message."""

    def error(self, message: str):
        self.exit(USER_ERROR, f"error: {message} (see {self.prog} --help)\n")

