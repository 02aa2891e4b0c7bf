"""Errors of the data layer that the prepare CLI reports as one `error: ...` line (exit code 2).

They live here, not in the CLI module: under `python -m sgmse_nc.data.prepare` the CLI module is
`__main__`, and a class defined there would be a different class from the one the builders raise.
"""
from __future__ import annotations

from sgmse_nc.audio import AudioError
from sgmse_nc.errors import UserError


class PrepareError(UserError, ValueError):
    """A structural problem with a corpus source or destination; the message names it and the fix."""


class BuildError(PrepareError):
    """A problem with a test-set builder's inputs or output folder; the message names it and the fix."""


class HonestyError(UserError, ValueError):
    """No honest noise reference could be found (see sgmse_nc.data.honesty); the message names the fix."""


class DataConfigError(AudioError):
    """A bad option of a dataset: `key` names the option (e.g. speech_dir), so that training can name the full
    config key (data.valid.speech_dir) in its error line."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key

