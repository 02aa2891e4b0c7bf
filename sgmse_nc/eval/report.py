"""Run-level evaluation: trained runs × test sets × guidance scales × reference strategies -> the study's tables.

    python -m sgmse_nc.eval.report [CONFIG] [Hydra overrides]
    python -m sgmse_nc.eval.report demo +runs.demo=outputs/demo/quickstart guidance=[0,1,3]

CONFIG names a file under conf/report/ (default: `default`) or is a path to a YAML file of the same form.
For every run (a checkpoint, or a run folder holding checkpoints/last.ckpt) and every test set (a folder
with clean/, noisy/, noise_ref/ and manifest.csv, as `prepare` writes them) each guidance scale w is
enhanced (w = 0: the null condition, i.e. the unconditional score, once per run and set; w > 0: once per
reference strategy, a folder of the set such as noise_ref/) with the library (enhancement.enhance_folder),
scored (evaluation.evaluate_folders, in a process pool while the next condition enhances) and tabled
(comparison). Output folder (`out_dir`):

    report.md                   header (scale: backbone, steps, data, sampler, N, seeds) + every set's tables
    <set>/comparison.{md,csv,json}   rows run × w (× reference), noisy first; by SNR and by category
    <set>/plot_vs_w.png, <set>/plot_snr_<run>.png, <set>/spectrograms.png
    work/<run>/<set>/<reference>_w<w>/{enhanced/,eval/}   wavs and per-file rows (reused on a rerun)
    work/noisy/<set>/eval/      the noisy input's per-file rows

and each run folder gets `reports/<out_dir name>/` with its own rows of the tables. Reruns resume: finished
enhancements and per-file rows are reused; a condition that failed (its error is kept in the table, marked
FAILED) is retried. A reference strategy whose name contains "oracle" (e.g. `oracle_mixed_noise`: the very
noise mixed into the input, noisy − clean) puts ORACLE into every title it appears in.
"""
from __future__ import annotations

import logging
import math
import sys
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from sgmse_nc.eval import comparison
from sgmse_nc.audio import list_audio, read_audio, write_audio
from sgmse_nc.errors import UserError
from sgmse_nc.eval.folder import init_worker, evaluate_folders, load_groups
from sgmse_nc.eval.metrics import METRICS
from sgmse_nc.eval.plots import save_figure
from sgmse_nc.eval.rows import read_per_file
from sgmse_nc.eval.tables import label_order
from sgmse_nc.io import write_text_atomic
from sgmse_nc.spec import Spectrogram, decibels

log = logging.getLogger(__name__)

ORACLE_MIXED_NOISE = "oracle_mixed_noise"  # computed here: noisy − clean of the same file
NULL = "null"  # the reference column of w = 0 (no reference: the null condition)
LAYOUT = ("clean", "noisy", "manifest.csv")


class ReportError(UserError, ValueError):
    """A user-facing problem with the report's configuration, runs or test sets; the message names the fix."""


# ----------------------------------------------------------------------------------------------- inputs

@dataclass
class Run:
    name: str
    ckpt: Path
    folder: Path | None  # the run folder (tables are copied there), None for a loose checkpoint
    info: dict = field(default_factory=dict)  # backbone, steps, data, seed (the header)

    @property
    def conditional(self) -> bool:
        return self.info.get("encoder", "none") != "none"


@dataclass
class Condition:
    w: float
    reference: str  # NULL for w = 0

    @property
    def key(self) -> str:
        return f"{self.reference}_w{self.w:g}"


def resolve_run(name: str, path) -> Run:
    if path is None:
        raise ReportError(f"run {name}: no path given. Set runs.{name}=<run folder or .ckpt> (or +runs.<name>=... "
                          f"for a run the config does not list).")
    path = Path(path)
    if path.is_dir():
        ckpt = path / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise ReportError(f"run {name}: {path} holds no checkpoints/last.ckpt. Point runs.{name} at a run "
                              f"folder written by train.py or at a .ckpt file.")
        return Run(name, ckpt, path, run_info(ckpt, path))
    if not path.is_file():
        raise ReportError(f"run {name}: {path} not found. Point runs.{name} at a run folder or a .ckpt file.")
    folder = path.parent.parent if path.parent.name == "checkpoints" else None
    return Run(name, path, folder, run_info(path, folder))


def run_info(ckpt: Path, folder: Path | None) -> dict:
    """What the header states about a run: backbone, trained steps, data, training seed, encoder."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - pickle/zip errors of every kind mean the same thing here
        raise ReportError(f"{ckpt}: not a checkpoint written by train.py ({_error(err)}).") from err
    hp = state.get("hyper_parameters", {})
    backbone = hp.get("backbone", {})
    info = {"steps": state.get("global_step"), "encoder": (hp.get("encoder") or {}).get("name", "none"),
            "backbone": f"{str(backbone.get('_target_', '?')).rsplit('.', 1)[-1]}"
                        f"(nf={backbone.get('nf', '?')}, ch_mult={backbone.get('ch_mult', '?')})",
            "sampler": dict(hp.get("sampler") or {})}
    config = folder / "config.yaml" if folder is not None else None
    if config is not None and config.is_file():
        cfg = OmegaConf.load(config)
        info["seed"] = cfg.get("seed")
        info["data"] = str(OmegaConf.select(cfg, "data.train.root", default=None)
                           or OmegaConf.select(cfg, "experiment_name", default="?"))
    return info


def expand_sets(sets) -> dict[str, Path]:
    """A builder's output with one folder per SNR (<out>/snr_<k>/, e.g. ESC-50 OOD) becomes one set per SNR."""
    out = {}
    for name, folder in sets.items():
        folder = Path(folder)
        per_snr = sorted((p for p in folder.glob("snr_*") if (p / "manifest.csv").is_file()),
                         key=lambda p: label_order(p.name.removeprefix("snr_")))
        if per_snr and not (folder / "manifest.csv").is_file():
            out.update({f"{name}_{p.name}": p for p in per_snr})
        else:
            out[name] = folder
    return out


def check_set(name: str, folder, references: list[str]) -> Path:
    folder = Path(folder)
    missing = [p for p in LAYOUT if not (folder / p).exists()]
    missing += [r for r in references if r != ORACLE_MIXED_NOISE and not (folder / r).is_dir()]
    if missing:
        raise ReportError(f"test set {name}: {folder} lacks {', '.join(missing)}. A test set holds clean/, noisy/, "
                          f"the reference folders ({', '.join(references) or 'none'}) and manifest.csv, as "
                          f"`python -m sgmse_nc.data.prepare` writes them.")
    return folder


def conditions(guidance, references: list[str]) -> list[Condition]:
    out = []
    for w in guidance:
        w = float(w)
        if w < 0:
            raise ReportError(f"guidance scale {w}: use w >= 0 (0 is the null condition).")
        out += [Condition(0.0, NULL)] if w == 0 else [Condition(w, r) for r in references]
    return out


def oracle_references(test_set: Path, out: Path) -> Path:
    """noisy − clean per file (the noise in the input itself): an ORACLE reference, written once."""
    for noisy in list_audio(test_set / "noisy"):
        rel = noisy.relative_to(test_set / "noisy")
        target = out / rel
        if not target.is_file():
            y, x = read_audio(noisy, min_samples=0), read_audio(test_set / "clean" / rel, min_samples=0)
            n = min(len(y), len(x))
            write_audio(target, y[:n] - x[:n], subtype="FLOAT")
    return out


# ------------------------------------------------------------------------------------------------ running

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
        except Exception as err:  # noqa: BLE001 - kept as the condition's failure
            future.set_exception(err)
        return future

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".strip().splitlines()[0][:300]


def run_report(cfg) -> dict:
    """Everything the module docstring lists; returns {set: comparison dict}."""
    cfg = OmegaConf.create(cfg) if not isinstance(cfg, DictConfig) else cfg
    if not cfg.get("runs") or not cfg.get("sets"):
        raise ReportError("the report needs runs and sets, e.g. +runs.demo=outputs/demo/quickstart "
                          "+sets.demo_test=data/demo/test (or list them in a conf/report/ file).")
    if not cfg.get("out_dir"):
        raise ReportError("set out_dir (the report folder), e.g. out_dir=reports/study.")
    out_dir = Path(cfg.out_dir)
    references = list(cfg.get("references") or ["noise_ref"])
    group_by, metrics = list(cfg.get("group_by") or []), list(cfg.get("metrics"))
    runs = [resolve_run(name, path) for name, path in cfg.runs.items()]
    needed = references if any(float(w) > 0 for w in cfg.guidance) else []
    sets = {name: check_set(name, path, needed) for name, path in expand_sets(cfg.sets).items()}
    conds = conditions(cfg.guidance, references)
    sampler = {k: v for k, v in OmegaConf.to_container(cfg.get("sampler") or {}).items() if v is not None}
    work = out_dir / "work"

    scorer = Scorer(int(cfg.get("score_workers", 1)))
    pending: dict[tuple, Future | str] = {}  # (run, set, condition key) -> future, or an error message
    try:
        for set_name, test_set in sets.items():
            group_cols = [g for g in group_by if g in pd.read_csv(test_set / "manifest.csv", nrows=0).columns]
            pending[(comparison.NOISY, set_name, "")] = scorer.submit(
                test_set / "noisy", test_set, work / "noisy" / set_name / "eval", group_cols, metrics)
            ref_dirs = {r: (oracle_references(test_set, work / "oracle" / set_name) if r == ORACLE_MIXED_NOISE
                            else test_set / r) for r in references}
            for run in runs:
                for cond in conds:
                    # an unconditional model ignores references and w: one enhancement serves every row
                    key = cond.key if run.conditional else f"{NULL}_w0"
                    if (run.name, set_name, key) in pending:
                        pending[(run.name, set_name, cond.key)] = pending[(run.name, set_name, key)]
                        continue
                    folder = work / run.name / set_name / key
                    try:
                        from sgmse_nc.enhance.folder import EnhanceOptions, enhance_folder

                        options = EnhanceOptions(device=cfg.get("device", "cpu"), batch_size=cfg.get("batch_size"),
                                                 guidance=cond.w if cond.w > 0 else None, seed=cfg.get("seed", 0),
                                                 sampler=sampler)
                        enhance_folder(run.ckpt, test_set / "noisy", folder / "enhanced", options,
                                       ref_dir=ref_dirs[cond.reference] if cond.w > 0 and run.conditional else None)
                        pending[(run.name, set_name, key)] = scorer.submit(
                            folder / "enhanced", test_set, folder / "eval", group_cols, metrics)
                    except Exception as err:  # noqa: BLE001 - one failed condition must not stop the study
                        log.error("run %s, set %s, %s failed:\n%s", run.name, set_name, key, traceback.format_exc())
                        pending[(run.name, set_name, key)] = f"enhancement failed: {_error(err)}"
                    pending[(run.name, set_name, cond.key)] = pending[(run.name, set_name, key)]
        results = {}
        for key, job in pending.items():
            if isinstance(job, Future):
                try:
                    job.result()
                    job = None
                except Exception as err:  # noqa: BLE001
                    job = f"scoring failed: {_error(err)}"
            results[key] = job
    finally:
        scorer.close()

    for set_name in sets:
        noisy_error = results[(comparison.NOISY, set_name, "")]
        if noisy_error:
            raise ReportError(f"test set {set_name}: its noisy input could not be scored ({noisy_error}).")
    extra: dict[str, list] = {name: [] for name in sets}  # w = auto rows from the diagnostics
    diag = cfg.get("diagnostics") or {}
    for run in runs:
        if diag.get("enabled", False) and run.conditional:
            try:
                for set_name, system in run_diagnostics(cfg, run, sets, conds, results, work, references).items():
                    extra[set_name].append(system)
            except Exception as err:  # noqa: BLE001 - diagnostics must not cost the tables
                log.error("diagnostics of run %s failed:\n%s", run.name, traceback.format_exc())
                if diag.get("auto", False):
                    for set_name in sets:
                        extra[set_name].append(comparison.System(
                            {"run": run.name, "w": "auto"}, error=f"diagnostics failed: {_error(err)}"))
    tables = {}
    for set_name, test_set in sets.items():
        tables[set_name] = write_set_tables(cfg, set_name, test_set, runs, conds, results, work, references,
                                            extra[set_name])
    write_report(cfg, runs, sets, tables, sampler)
    return tables


def _system(run: Run, cond: Condition, per_file_dir: Path, error: str | None, several_refs: bool):
    labels = {"run": run.name, "w": f"{cond.w:g}"}
    if several_refs:
        labels["reference"] = cond.reference
    notes = [] if run.conditional else ["unconditional model: every w is its unconditional score"]
    if error:
        return comparison.System(labels, error=error, notes=notes)
    return comparison.System(labels, read_per_file(per_file_dir / "per_file.csv"), notes=notes)


def _set_comparison(cfg, set_name, test_set, runs, conds, results, work, references, extra=(),
                    only: Run | None = None):
    group_cols = [g for g in (cfg.get("group_by") or []) if g in pd.read_csv(test_set / "manifest.csv", nrows=0)]
    noisy = read_per_file(work / "noisy" / set_name / "eval" / "per_file.csv")
    systems = []
    for run in runs if only is None else [only]:
        for cond in conds:
            key = cond.key if run.conditional else f"{NULL}_w0"
            systems.append(_system(run, cond, work / run.name / set_name / key / "eval",
                                   results[(run.name, set_name, cond.key)], len(references) > 1))
        systems += [s for s in extra if s.labels["run"] == run.name]
    groups = load_groups(test_set / "manifest.csv", list(noisy["id"]), group_cols) if group_cols else None
    return comparison.compare(systems, cfg.metrics, noisy, groups, group_cols)


def _train_references(cfg, run: Run, work: Path) -> tuple[Path, Path]:
    """(reference folder, noisy folder) the run was trained on: diagnostics.train_set, else the run's training
    data; a folder without noise_ref/ gives its own noisy − clean (what same_utterance training used)."""
    folder = cfg.diagnostics.get("train_set")
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
    return oracle_references(folder, work / "train_refs" / run.name), folder / "noisy"


def run_diagnostics(cfg, run: Run, sets: dict, conds, results, work, references) -> dict:
    """Embedding map, stats and OOD scores of `run` (into out_dir/diagnostics/<run>/); the improvement per
    OOD bin and w; with diagnostics.auto a w=auto system per set (returned, set -> System)."""
    from sgmse_nc.eval import diagnostics
    from sgmse_nc.diffusion.model import ScoreModel

    diag = cfg.diagnostics
    model = ScoreModel.load_for_inference(run.ckpt, map_location=cfg.get("device", "cpu"))
    _, ref_files, noisy_files = diagnostics.set_references(*_train_references(cfg, run, work),
                                                           limit=int(diag.max_train), seed=int(cfg.seed))
    train = diagnostics.embed_files(model, ref_files, noisy_files)
    reference = references[0]  # the strategy the map, the scores and w = auto use
    embedded = {}
    for set_name, test_set in sets.items():
        ref_dir = work / "oracle" / set_name if reference == ORACLE_MIXED_NOISE else test_set / reference
        ids, files, noisy = diagnostics.set_references(ref_dir, test_set / "noisy")
        embedded[set_name] = (ids, diagnostics.embed_files(model, files, noisy))
    metrics = list(cfg.metrics)
    rows = []
    for set_name in sets:
        noisy = read_per_file(work / "noisy" / set_name / "eval" / "per_file.csv").set_index("id")
        for cond in conds:
            if results[(run.name, set_name, cond.key)]:
                continue
            table = read_per_file(work / run.name / set_name / cond.key / "eval" / "per_file.csv")
            label = f"{cond.w:g}" if len(references) == 1 or cond.w == 0 else f"{cond.w:g} {cond.reference}"
            part = pd.DataFrame({"set": set_name, "id": table["id"], "w": label})
            for m in metrics:
                part[f"delta_{m}"] = table[m].to_numpy() - noisy.loc[table["id"], m].to_numpy()
            rows.append(part)
    out = diagnostics.write_diagnostics(Path(cfg.out_dir) / "diagnostics" / run.name, train, embedded,
                                        pd.concat(rows) if rows else None, metrics, diag.map, int(diag.k))
    if not diag.get("auto", False):
        return {}
    return {set_name: _auto_system(run, set_name, out["scores"], conds, results, work, reference, diag)
            for set_name in sets}


def _auto_system(run, set_name, scores, conds, results, work, reference, diag):
    """w = auto: per file the scale diagnostics.auto_guidance picks from its OOD score, that condition's row."""
    from sgmse_nc.eval import diagnostics

    grid = {c.w: c for c in conds if c.w == 0 or c.reference == reference}
    scores = scores[scores["set"] == set_name]
    chosen = diagnostics.auto_guidance(scores["ood_score"].to_numpy(), list(grid), diag.s_lo, diag.s_hi)
    labels = {"run": run.name, "w": "auto"}
    failed = [f"{w:g}" for w in set(chosen) if results[(run.name, set_name, grid[w].key)]]
    if failed:
        return comparison.System(labels, error=f"w={', '.join(failed)} failed, which auto picks for some files")
    parts = []
    for w in sorted(set(chosen)):
        table = read_per_file(work / run.name / set_name / grid[w].key / "eval" / "per_file.csv")
        parts.append(table[table["id"].isin(scores["id"][chosen == w])])
    counts = ", ".join(f"w={w:g}: {int((chosen == w).sum())}" for w in sorted(set(chosen)))
    note = (f"w=auto: w(s) = {max(grid):g} · clip(({diag.s_hi:g} − s) / ({diag.s_hi:g} − {diag.s_lo:g}), 0, 1) "
            f"of the OOD score s, snapped to the computed scales ({counts})")
    return comparison.System(labels, pd.concat(parts, ignore_index=True), notes=[note])


def _title(set_name: str, conds: list[Condition]) -> str:
    oracle = any("oracle" in c.reference for c in conds)
    return f"{set_name}" + (" — ORACLE references (the noise mixed into the input)" if oracle else "")


def write_set_tables(cfg, set_name, test_set, runs, conds, results, work, references, extra=()) -> dict:
    out = Path(cfg.out_dir) / set_name
    result = _set_comparison(cfg, set_name, test_set, runs, conds, results, work, references, extra)
    comparison.write(result, out, _title(set_name, conds))
    plot_vs_w(result, out / "plot_vs_w.png")
    for run in runs:
        plot_snr_bars(result, run.name, out / f"plot_snr_{run.name}.png")
    plot_spectrograms(cfg, test_set, runs, conds, work, set_name, out / "spectrograms.png")
    for run in runs:  # each run folder gets its own rows
        if run.folder is not None:
            own = _set_comparison(cfg, set_name, test_set, runs, conds, results, work, references, extra, only=run)
            comparison.write(own, run.folder / "reports" / Path(cfg.out_dir).name / set_name,
                             f"{run.name} on {_title(set_name, conds)}")
    return result


def header(cfg, runs: list[Run], sets: dict, sampler: dict) -> list[str]:
    lines = []
    for run in runs:
        s = {**run.info.get("sampler", {}), **sampler}
        lines.append(f"run **{run.name}**: {run.ckpt}; backbone {run.info['backbone']}, encoder "
                     f"{run.info['encoder']}, {run.info['steps']} training steps, data {run.info.get('data', '?')}, "
                     f"training seed {run.info.get('seed', '?')}; sampler {s.get('name', '?')}, N={s.get('N', '?')}")
    lines.append("test sets: " + ", ".join(f"{n} ({p}, {len(list_audio(p / 'noisy'))} files)" for n, p in sets.items()))
    lines.append(f"guidance scales {', '.join(f'{float(w):g}' for w in cfg.guidance)} (0: null condition); "
                 f"reference strategies {', '.join(cfg.get('references') or ['noise_ref'])}; "
                 f"enhancement seed {cfg.get('seed', 0)}; device {cfg.get('device', 'cpu')}")
    return lines


def write_report(cfg, runs, sets, tables, sampler) -> Path:
    out_dir = Path(cfg.out_dir)
    oracle = any("oracle" in r for r in cfg.get("references") or []) and any(float(w) > 0 for w in cfg.guidance)
    title = "Evaluation report" + (" — ORACLE references" if oracle else "")
    parts = [f"# {title}", ""] + [f"- {line}" for line in header(cfg, runs, sets, sampler)]
    for set_name, result in tables.items():
        conds = conditions(cfg.guidance, list(cfg.get("references") or ["noise_ref"]))
        parts += ["", comparison.markdown(result, _title(set_name, conds)),
                  f"![metric vs w]({set_name}/plot_vs_w.png)"]
    path = out_dir / "report.md"
    write_text_atomic(path, "\n".join(parts) + "\n")
    print("\n".join(parts))
    print(f"report in {path}")
    return path


# ------------------------------------------------------------------------------------------------- plots

def plot_vs_w(result: dict, path: Path) -> None:
    """Per metric: mean ± std vs w, one line per run (× reference), the noisy mean as a dashed line."""
    from matplotlib.figure import Figure

    metrics = result["metrics"]
    fig = Figure(figsize=(4.2 * len(metrics), 3.4), layout="tight")
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    lines: dict[str, list] = {}
    autos: dict[str, dict] = {}  # w = auto has no abscissa: a dotted line at its mean
    for system in result["systems"]:
        labels = system["labels"]
        name = labels["run"] + (f" / {labels['reference']}" if "reference" in labels and labels["w"] != "0" else "")
        if system["summary"] is not None and labels["w"] == "auto":
            autos[labels["run"]] = system["summary"]["enhanced"]
        elif system["summary"] is not None:
            lines.setdefault(name, []).append((float(labels["w"]), system["summary"]["enhanced"]))
    for ax, m in zip(axes, metrics):
        for name, points in lines.items():
            points = sorted(points, key=lambda p: p[0])
            ws = [p[0] for p in points]
            means = [p[1][m]["mean"] for p in points]
            stds = [p[1][m]["std"] for p in points]
            ax.errorbar(ws, means, yerr=stds, marker="o", capsize=3, label=name)
        for name, stats in autos.items():
            ax.axhline(stats[m]["mean"], linestyle=":", color="black", label=f"{name} w=auto")
        if result["noisy"] is not None:
            ax.axhline(result["noisy"]["enhanced"][m]["mean"], color="gray", linestyle="--", label="noisy")
        ax.set_xlabel("guidance scale w")
        ax.set_ylabel(METRICS[m].label)
    axes[0].legend(loc="best", fontsize="small")
    save_figure(fig, path, dpi=110)


def plot_snr_bars(result: dict, run: str, path: Path, key: str = "snr") -> None:
    """Per metric: bars per SNR for the noisy input and each w of `run`."""
    from matplotlib.figure import Figure

    if key not in result["group_by"]:
        return
    metrics = result["metrics"]
    series = [("noisy", result["noisy"])] + [
        (f"w={s['labels']['w']}" + (f" {s['labels']['reference']}" if "reference" in s["labels"] else ""),
         s["summary"]) for s in result["systems"] if s["labels"]["run"] == run and s["summary"] is not None]
    labels = sorted(result["noisy"]["groups"][key], key=label_order)
    fig = Figure(figsize=(4.2 * len(metrics), 3.4), layout="tight")
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    width = 0.8 / len(series)
    for ax, m in zip(axes, metrics):
        for j, (name, summary) in enumerate(series):
            means = [summary["groups"][key].get(lab, {}).get("enhanced", {}).get(m, {}).get("mean", math.nan)
                     for lab in labels]
            ax.bar(np.arange(len(labels)) + j * width, means, width, label=name)
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels)
        ax.set_xlabel(f"{key} [dB]" if key == "snr" else key)
        ax.set_ylabel(METRICS[m].label)
    axes[0].legend(loc="best", fontsize="small")
    fig.suptitle(run)
    save_figure(fig, path, dpi=110)


def plot_spectrograms(cfg, test_set: Path, runs, conds, work: Path, set_name: str, path: Path) -> None:
    """Rows: a few files; columns: noisy, each run's enhanced (at the largest w), clean, reference."""
    from matplotlib.figure import Figure

    count = int(cfg.get("spectrogram_files", 2))
    files = [f.relative_to(test_set / "noisy") for f in list_audio(test_set / "noisy")][:count]
    cond = max(conds, key=lambda c: c.w)
    ref_dir = (work / "oracle" / set_name if cond.reference == ORACLE_MIXED_NOISE
               else test_set / cond.reference if cond.reference != NULL else None)
    columns = [("noisy", test_set / "noisy")]
    columns += [(f"{run.name} w={cond.w:g}", work / run.name / set_name / (cond.key if run.conditional
                                                                           else f"{NULL}_w0") / "enhanced")
                for run in runs]
    columns += [("clean", test_set / "clean")] + ([(f"reference ({cond.reference})", ref_dir)] if ref_dir else [])
    if not files:
        return
    fig = Figure(figsize=(2.6 * len(columns), 2.2 * len(files)), layout="tight")
    axes = np.array(fig.subplots(len(files), len(columns), squeeze=False))
    for i, rel in enumerate(files):
        for j, (name, folder) in enumerate(columns):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if folder is None or not (folder / rel).is_file():
                ax.set_title(f"{name}: missing", fontsize="small")
                continue
            ax.imshow(decibels(Spectrogram().stft(read_audio(folder / rel, min_samples=0))).numpy(), origin="lower", aspect="auto",
                      vmin=-80, vmax=20, cmap="magma")
            ax.set_title(f"{name}\n{rel.with_suffix('').as_posix()}" if i == 0 else rel.with_suffix("").as_posix(),
                         fontsize="small")
    save_figure(fig, path, dpi=110)


# --------------------------------------------------------------------------------------------------- CLI

def load_config(name: str = "default", overrides=()) -> DictConfig:
    """A conf/report/ file by name, or a YAML path, with Hydra overrides applied."""
    from hydra import compose, initialize_config_dir

    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ReportError(f"report config {path} not found.")
        directory, config_name = path.resolve().parent, path.stem
    else:
        from sgmse_nc.config import CONFIG_DIR

        directory, config_name = CONFIG_DIR / "report", name
        if not (directory / f"{name}.yaml").is_file():
            choices = sorted(p.stem for p in directory.glob("*.yaml"))
            raise ReportError(f"no report config {name!r} in {directory}; choose one of {choices} or give a path.")
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(directory), version_base="1.3"):
            return compose(config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise ReportError(f"report config {config_name} with overrides {list(overrides)}: {err} (a key the config "
                          f"lacks needs a leading +, e.g. +runs.<name>=<folder>)") from err


def main(argv=None) -> int:
    """The exit status: 0, 1 when a condition failed (marked in the tables), 2 for a configuration problem."""
    from sgmse_nc.cli import run_main

    return run_main(_run, argv)


def _run(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    name = argv.pop(0) if argv and "=" not in argv[0] else "default"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tables = run_report(load_config(name, argv))
    failed = [f"{s}: " + ", ".join(f"{k}={v}" for k, v in system["labels"].items())
              for s, result in tables.items() for system in result["systems"] if system["error"]]
    if failed:
        print(f"error: {len(failed)} condition(s) failed and are marked FAILED in the tables: {'; '.join(failed)}. "
              f"Rerun the same command to retry them (finished ones are reused).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
