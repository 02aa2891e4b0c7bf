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



class Number:
    """An argparse `type` for a number option that states its range: `Number(int, low=1)`, `Number(float, low=0,
    low_open=True)`, `Number(int, words=("auto",))`. Refuses non-numbers, NaN/Inf and values out of range with the
    option's one-line error; the range is kept (low, high, words) so tests can walk every option with bad values."""

    def __init__(self, kind: type = int, low: float | None = None, high: float | None = None,
                 low_open: bool = False, words: tuple[str, ...] = ()):
        self.kind, self.low, self.high, self.low_open, self.words = kind, low, high, low_open, tuple(words)
        self.__name__ = self.describe()  # argparse names the type in its messages

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        show = (lambda v: str(int(v))) if self.kind is int else (lambda v: f"{v:g}")
        if self.low is not None and self.high is not None:
            what += f" {'above' if self.low_open else 'from'} {show(self.low)} {'up ' if self.low_open else ''}to " \
                    f"{show(self.high)}"
        elif self.low is not None:
            what += f" {'above' if self.low_open else 'at least'} {show(self.low)}"
        elif self.high is not None:
            what += f" at most {show(self.high)}"
        return " or ".join([what, *self.words])

    def __call__(self, text: str):
        if text in self.words:
            return text
        try:
            value = self.kind(text)
        except ValueError:
            value = None
        if value is None or value != value or value in (float("inf"), float("-inf")) or not self.allows(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}")
        return value

    def allows(self, value) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or value <= self.high

    def __repr__(self) -> str:
        return f"Number({self.describe()})"

    def check(self, option: str, value) -> None:
        """A config value (not typed on a command line) against the same rule: OptionError naming `option`."""
        from sgmse_nc.errors import OptionError

        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (self.kind is float or
                                                                                   float(value).is_integer())
        if value in self.words or (ok and value == value and abs(value) != float("inf") and self.allows(value)):
            return
        raise OptionError(f"{option}={value}: must be {self.describe()}.")


# Ranges several commands share. Every number option has both bounds (tests/commands/test_option_values.py walks
# them with 0, negative, huge, NaN and non-numbers): a huge value is refused in one line at start instead of a
# run that overflows, exhausts memory or never ends.
SEED = Number(int, low=0, high=2**32 - 1)              # what numpy's and torch's generators take everywhere
AUDIO_RATE = Number(int, low=8000, high=384000)         # sample rates, Hz
SNR_DB = Number(float, low=-50, high=100)               # mixing SNRs, dB
WORKERS = Number(int, low=1, high=256)                  # worker processes
THREADS = Number(int, low=1, high=1024, words=("auto",))
STEPS = Number(int, low=1, high=10000)                  # sampler steps
GUIDANCE = Number(float, low=0, high=100)               # classifier-free guidance scale w
BATCH = Number(int, low=1, high=4096)
COUNT = Number(int, low=1, high=10**7)                  # items to build
