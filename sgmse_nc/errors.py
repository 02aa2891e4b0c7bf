"""The project's own errors: problems a user caused and can fix (a bad file, a bad option, a wrong folder).

Every entry point prints such an error as one `error: ...` line and exits with status 2 (sgmse_nc.cli);
anything else is a bug and keeps its traceback. Subclass UserError (or AudioError) for new kinds.
`short_list` shortens the lists of names such messages quote.
"""
from __future__ import annotations


class UserError(Exception):
    """A user-facing problem; the message names the file or option and the fix."""


class OptionError(UserError, ValueError):
    """An option's value (command line or config) out of its range, or not available here (a device this machine
    lacks, a sampler the checkpoint's SDE lacks); the message names the option and what it can be."""


class Interrupted(UserError):
    """The user stopped a run (Ctrl-C); the message says what was finished and how to resume."""


def find_user_error(err: BaseException) -> UserError | None:
    """`err` or the UserError it was raised from (Hydra's instantiate wraps constructor errors)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def short_list(names, limit: int = 5) -> str:
    """The first `limit` names, comma-separated, then "(+N more)" for the rest: long lists in one message line."""
    names = [str(n) for n in names]
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
