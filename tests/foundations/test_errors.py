"""Every error class the project defines is a UserError (one `error:` line, exit 2), except the few listed with
the reason they are not errors a user caused."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import sgmse_nc
from sgmse_nc.errors import UserError

# exception classes that are not a user's error, and why
INTERNAL = {"sgmse_nc.eval.metrics.MetricFailed": "caught by compute_metrics: the metric becomes NaN with the reason",
            "sgmse_nc.train.run.TrainingInterrupted": "a SystemExit: the exit status of a run stopped by a signal"}


def project_errors(package=sgmse_nc) -> dict[str, type]:
    found = {}
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        if info.name.endswith("__main__"):
            continue  # running it would run the command
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == info.name:
                found[f"{info.name}.{cls.__qualname__}"] = cls
    return found


def test_every_project_error_a_user_can_cause_is_a_user_error():
    errors = project_errors()
    assert "sgmse_nc.eval.report.study.ReportError" in errors and "sgmse_nc.eval.folder.EvaluationError" in errors
    not_user = sorted(name for name, cls in errors.items() if not issubclass(cls, UserError) and name not in INTERNAL)
    assert not not_user, f"derive these from sgmse_nc.errors.UserError (or list them in INTERNAL with why): {not_user}"
    assert all(not issubclass(errors[name], UserError) for name in INTERNAL if name in errors)
