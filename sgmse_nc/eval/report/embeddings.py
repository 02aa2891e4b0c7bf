"""The report's embedding diagnostics (sgmse_nc.eval.diagnostics) of each conditional run: where its encoder puts
the test sets' references relative to its training references, the improvement per OOD-score bin and w, and
with diagnostics.auto a w = auto row per set (per file the scale its OOD score picks).

The training references are diagnostics.train_set's files, else the run's own training examples rebuilt from
its config.yaml (paired folders or dynamic mixing from its noise pools); a run whose training data cannot be
read here is skipped with one line saying why."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from sgmse_nc.errors import UserError, find_user_error
from sgmse_nc.eval import comparison, diagnostics
from sgmse_nc.eval.report.study import ReportError, Run, Study, error_line
from sgmse_nc.eval.rows import read_per_file

log = logging.getLogger(__name__)


class DiagnosticsSkipped(UserError):
    """The diagnostics of a run cannot be computed here, for a reason the user can act on: the report says it in
    one warning line and goes on (not a failure)."""


def auto_rows(study: Study) -> dict[str, list[comparison.System]]:
    """set name -> the w = auto systems of the diagnostics (none unless diagnostics.enabled). A run whose
    training references cannot be found here is skipped with one line naming why; any other failure goes into
    study.failures (the command ends with one error line and exits 1) and, with diagnostics.auto, gives FAILED
    rows; the tables are written either way."""
    extra: dict[str, list] = {name: [] for name in study.sets}
    diag = study.cfg.get("diagnostics") or {}
    for run in study.runs:
        if not (diag.get("enabled", False) and run.conditional):
            continue
        try:
            for set_name, system in run_diagnostics(study, run).items():
                extra[set_name].append(system)
        except DiagnosticsSkipped as why:
            log.warning("warning: embedding diagnostics of run %s skipped: %s", run.name, why)
        except Exception as err:  # noqa: BLE001 - diagnostics must not cost the tables; the exit status says it
            log.debug("diagnostics of run %s failed", run.name, exc_info=True)  # the traceback, for --debug logs
            study.failures.append(f"embedding diagnostics of run {run.name} failed: {error_line(err)}")
            if diag.get("auto", False):
                for set_name in study.sets:
                    extra[set_name].append(comparison.System(
                        {"run": run.name, "w": "auto"}, error=f"diagnostics failed: {error_line(err)}"))
    return extra


def _train_set(study: Study, run: Run) -> tuple[Path, Path]:
    """(reference folder, noisy folder) of diagnostics.train_set; a folder without noise_ref/ gives its own
    noisy − clean (what same_utterance training used)."""
    folder = Path(study.cfg.diagnostics.train_set)
    if not (folder / "noisy").is_dir():
        raise ReportError(f"diagnostics.train_set={folder}: no noisy/ folder there; give a folder with noisy/ and "
                          f"noise_ref/ (or clean/).")
    if (folder / "noise_ref").is_dir():
        return folder / "noise_ref", folder / "noisy"
    return study.train_references(run, folder), folder / "noisy"


def _train_dataset(run: Run):
    """The run's own training dataset, rebuilt from the data.train node of its config.yaml in evaluation mode
    (deterministic draws): paired folders and dynamic mixing from the run's noise pools alike."""
    from hydra.utils import instantiate

    config = run.folder / "config.yaml" if run.folder is not None else None
    if config is None or not config.is_file():
        raise DiagnosticsSkipped(f"no config.yaml beside {run.ckpt}, so its training data is unknown; set "
                                 f"diagnostics.train_set=<folder with noisy/ and noise_ref/>, or "
                                 f"diagnostics.enabled=false")
    node = OmegaConf.select(OmegaConf.load(config), "data.train", default=None)
    if node is None or "_target_" not in node:
        raise DiagnosticsSkipped(f"{config} has no data.train dataset; set diagnostics.train_set=<folder>")
    node = OmegaConf.to_container(node)
    node["train"] = False  # evaluation draws: the same references on every rerun
    try:
        return instantiate(node)
    except Exception as err:
        cause = find_user_error(err)  # a folder that moved, another machine: a reason; anything else is a failure
        if cause is None:
            raise
        raise DiagnosticsSkipped(f"its training data (data.train of {config}) cannot be read here "
                                 f"({error_line(cause)}); set diagnostics.train_set=<folder with noisy/ and "
                                 f"noise_ref/>, or diagnostics.enabled=false") from None


def training_references(study: Study, run: Run):
    """model -> the embeddings of the run's training references: diagnostics.train_set's files, else a seeded
    sample of the run's own training examples (their references, encoded as training encoded them). Found
    before the model loads, so a run whose data is not here is skipped at once."""
    diag = study.cfg.diagnostics
    if diag.get("train_set") is not None:
        _, ref_files, noisy_files = diagnostics.set_references(*_train_set(study, run), limit=int(diag.max_train),
                                                               seed=int(study.cfg.seed))
        return lambda model: diagnostics.embed_files(model, ref_files, noisy_files, study.cfg.get("ref_seconds"))
    dataset = _train_dataset(run)
    count = min(int(diag.max_train), len(dataset))
    indices = sorted(np.random.default_rng(int(study.cfg.seed)).choice(len(dataset), count, replace=False))
    return lambda model: diagnostics.embed_examples(model, dataset, indices)


def run_diagnostics(study: Study, run: Run) -> dict:
    """Embedding map, stats and OOD scores of `run` (into out_dir/diagnostics/<run>/); the improvement per
    OOD bin and w; with diagnostics.auto a w=auto system per set (returned, set -> System)."""
    from sgmse_nc.diffusion.model import ScoreModel

    cfg, diag = study.cfg, study.cfg.diagnostics
    embed_training = training_references(study, run)
    model = ScoreModel.load_for_inference(run.ckpt, map_location=cfg.get("device", "cpu"))
    train = embed_training(model)
    if len(train) < 2:
        raise DiagnosticsSkipped(f"{len(train)} training reference(s) embedded; the OOD score needs at least two")
    reference = study.references[0]  # the strategy the map, the scores and w = auto use
    embedded = {}
    for set_name, test_set in study.sets.items():
        ids, files, noisy = diagnostics.set_references(study.reference_dir(set_name, reference), test_set / "noisy")
        embedded[set_name] = (ids, diagnostics.embed_files(model, files, noisy, study.cfg.get("ref_seconds")))
    metrics = study.metrics
    rows = []
    for set_name in study.sets:
        noisy = read_per_file(study.per_file(set_name)).set_index("id")
        for cell in study.cells:
            if study.results[(run.name, set_name, cell.key)]:
                continue
            table = read_per_file(study.per_file(set_name, run, cell))
            label = f"{cell.w:g}" if len(study.references) == 1 or cell.w == 0 else f"{cell.w:g} {cell.reference}"
            part = pd.DataFrame({"set": set_name, "id": table["id"], "w": label})
            for m in metrics:
                part[f"delta_{m}"] = table[m].to_numpy() - noisy.loc[table["id"], m].to_numpy()
            rows.append(part)
    out = diagnostics.write_diagnostics(study.out_dir / "diagnostics" / run.name, train, embedded,
                                        pd.concat(rows) if rows else None, metrics, diag.map, int(diag.k))
    if not diag.get("auto", False):
        return {}
    return {set_name: _auto_system(study, run, set_name, out["scores"], reference) for set_name in study.sets}


def _auto_system(study: Study, run: Run, set_name: str, scores: pd.DataFrame, reference: str):
    """w = auto: per file the scale diagnostics.auto_guidance picks from its OOD score, that cell's row."""
    diag = study.cfg.diagnostics
    grid = {c.w: c for c in study.cells if c.w == 0 or c.reference == reference}
    scores = scores[scores["set"] == set_name]
    chosen = diagnostics.auto_guidance(scores["ood_score"].to_numpy(), list(grid), diag.s_lo, diag.s_hi)
    labels = {"run": run.name, "w": "auto"}
    failed = [f"{w:g}" for w in set(chosen) if study.results[(run.name, set_name, grid[w].key)]]
    if failed:
        return comparison.System(labels, error=f"w={', '.join(failed)} failed, which auto picks for some files")
    parts = []
    for w in sorted(set(chosen)):
        table = read_per_file(study.per_file(set_name, run, grid[w]))
        parts.append(table[table["id"].isin(scores["id"][chosen == w])])
    counts = ", ".join(f"w={w:g}: {int((chosen == w).sum())}" for w in sorted(set(chosen)))
    note = (f"w=auto: w(s) = {max(grid):g} · clip(({diag.s_hi:g} − s) / ({diag.s_hi:g} − {diag.s_lo:g}), 0, 1) "
            f"of the OOD score s, snapped to the computed scales ({counts})")
    return comparison.System(labels, pd.concat(parts, ignore_index=True), notes=[note])
