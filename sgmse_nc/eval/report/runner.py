"""Running the report's cells: each run × test set × cell is enhanced (sgmse_nc.enhance.folder) and scored
(sgmse_nc.eval.folder) in a process pool while the next cell enhances; the noisy input is scored once per set.

A cell that fails keeps its error (its row is marked FAILED in the tables); the others go on. An
unconditional model ignores references and w, so it has one cell (Study.run_cells).
"""
from __future__ import annotations

import logging
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from sgmse_nc.eval import comparison
from sgmse_nc.eval.folder import evaluate_folders, init_worker
from sgmse_nc.io import DiskWriteError
from sgmse_nc.eval.report.study import Cell, ReportError, Run, Study, error_line

log = logging.getLogger(__name__)


def _score(enhanced: Path, test_set: Path, out: Path, group_by, metrics) -> dict:
    """One folder's per-file rows (runs in a worker process)."""
    return evaluate_folders(enhanced, test_set / "clean", out_dir=out, manifest=test_set / "manifest.csv",
                            group_by=group_by, metrics=metrics, plot=False, quiet=True)


class Scorer:
    """Scores folders in a process pool while the caller enhances the next ones (workers = 0: inline)."""

    def __init__(self, workers: int):
        self.pool = (ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=init_worker)
                     if workers > 0 else None)

    def submit(self, *args) -> Future:
        if self.pool is not None:
            return self.pool.submit(_score, *args)
        future = Future()
        try:
            future.set_result(_score(*args))
        except Exception as err:  # noqa: BLE001 - kept as the cell's failure
            future.set_exception(err)
        return future

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _enhance(study: Study, run: Run, set_name: str, cell: Cell, out_dir: Path) -> None:
    from sgmse_nc.enhance.folder import EnhanceOptions, enhance_folder

    cfg = study.cfg
    options = EnhanceOptions(device=cfg.get("device", "cpu"), batch_size=cfg.get("batch_size"),
                             guidance=cell.w if cell.w > 0 else None, seed=cfg.get("seed", 0), sampler=study.sampler,
                             ref_seconds=cfg.get("ref_seconds"))
    enhance_folder(run.ckpt, study.sets[set_name] / "noisy", out_dir, options,
                   ref_dir=study.reference_dir(set_name, cell.reference) if cell.w > 0 and run.conditional else None)


def enhance_and_score(study: Study) -> None:
    """Every cell of every run and set, and the noisy inputs, into study.results (None or the failure)."""
    scorer = Scorer(int(study.cfg.get("score_workers", 1)))
    pending: dict[tuple, Future | str] = {}  # (run, set, cell key) -> future, or an error message
    try:
        for set_name, test_set in study.sets.items():
            group_cols = sorted(set(study.groups[set_name].values()))  # the manifest's own column names
            pending[(comparison.NOISY, set_name, "")] = scorer.submit(
                test_set / "noisy", test_set, study.work(set_name) / "eval", group_cols, study.metrics)
            for run in study.runs:
                for cell in study.run_cells(run):  # an unconditional run has one cell
                    folder = study.work(set_name, run, cell)
                    key = (run.name, set_name, cell.key)
                    try:
                        _enhance(study, run, set_name, cell, folder / "enhanced")
                        pending[key] = scorer.submit(folder / "enhanced", test_set, folder / "eval", group_cols,
                                                     study.metrics)
                    except Exception as err:  # noqa: BLE001 - one failed cell must not stop the study
                        if isinstance(err, DiskWriteError):
                            raise  # but a full disk stops every cell: one line, and a rerun resumes
                        log.error("run %s, set %s, %s failed:\n%s", run.name, set_name, folder.name,
                                  traceback.format_exc())
                        pending[key] = f"enhancement failed: {error_line(err)}"
        for key, job in pending.items():
            if isinstance(job, Future):
                try:
                    job.result()
                    job = None
                except Exception as err:  # noqa: BLE001
                    if isinstance(err, DiskWriteError):
                        raise
                    job = f"scoring failed: {error_line(err)}"
            study.results[key] = job
    finally:
        scorer.close()
    for set_name in study.sets:
        noisy_error = study.results[(comparison.NOISY, set_name, "")]
        if noisy_error:
            raise ReportError(f"test set {set_name}: its noisy input could not be scored ({noisy_error}).")
