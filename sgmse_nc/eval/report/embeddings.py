"""The report's embedding diagnostics (sgmse_nc.eval.diagnostics) of each conditional run: where its encoder puts
the test sets' references relative to its training references, the improvement per OOD-score bin and w, and
with diagnostics.auto a w = auto row per set (per file the scale its OOD score picks)."""
from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from sgmse_nc.eval import comparison, diagnostics
from sgmse_nc.eval.report.study import ReportError, Run, Study, error_line
from sgmse_nc.eval.rows import read_per_file

log = logging.getLogger(__name__)


def auto_rows(study: Study) -> dict[str, list[comparison.System]]:
    """set name -> the w = auto systems of the diagnostics (none unless diagnostics.enabled; a run whose
    diagnostics fail logs why and, with diagnostics.auto, gets a FAILED row: never costs the tables)."""
    extra: dict[str, list] = {name: [] for name in study.sets}
    diag = study.cfg.get("diagnostics") or {}
    for run in study.runs:
        if diag.get("enabled", False) and run.conditional:
            try:
                for set_name, system in run_diagnostics(study, run).items():
                    extra[set_name].append(system)
            except Exception as err:  # noqa: BLE001 - diagnostics must not cost the tables
                log.error("diagnostics of run %s failed:\n%s", run.name, traceback.format_exc())
                if diag.get("auto", False):
                    for set_name in study.sets:
                        extra[set_name].append(comparison.System(
                            {"run": run.name, "w": "auto"}, error=f"diagnostics failed: {error_line(err)}"))
    return extra


def _train_references(study: Study, run: Run) -> tuple[Path, Path]:
    """(reference folder, noisy folder) the run was trained on: diagnostics.train_set, else the run's training
    data; a folder without noise_ref/ gives its own noisy − clean (what same_utterance training used)."""
    folder = study.cfg.diagnostics.get("train_set")
    if folder is None and run.folder is not None and (run.folder / "config.yaml").is_file():
        train = OmegaConf.select(OmegaConf.load(run.folder / "config.yaml"), "data.train", default=None)
        if train is not None and train.get("root") and train.get("subset"):
            folder = Path(train.root) / train.subset
    if folder is None or not (Path(folder) / "noisy").is_dir():
        raise ReportError(f"run {run.name}: no training references found for the diagnostics; set "
                          f"diagnostics.train_set=<folder with noisy/ and noise_ref/ (or clean/)>.")
    folder = Path(folder)
    if (folder / "noise_ref").is_dir():
        return folder / "noise_ref", folder / "noisy"
    return study.train_references(run, folder), folder / "noisy"


def run_diagnostics(study: Study, run: Run) -> dict:
    """Embedding map, stats and OOD scores of `run` (into out_dir/diagnostics/<run>/); the improvement per
    OOD bin and w; with diagnostics.auto a w=auto system per set (returned, set -> System)."""
    from sgmse_nc.diffusion.model import ScoreModel

    cfg, diag = study.cfg, study.cfg.diagnostics
    model = ScoreModel.load_for_inference(run.ckpt, map_location=cfg.get("device", "cpu"))
    _, ref_files, noisy_files = diagnostics.set_references(*_train_references(study, run),
                                                           limit=int(diag.max_train), seed=int(cfg.seed))
    train = diagnostics.embed_files(model, ref_files, noisy_files)
    reference = study.references[0]  # the strategy the map, the scores and w = auto use
    embedded = {}
    for set_name, test_set in study.sets.items():
        ids, files, noisy = diagnostics.set_references(study.reference_dir(set_name, reference), test_set / "noisy")
        embedded[set_name] = (ids, diagnostics.embed_files(model, files, noisy))
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
