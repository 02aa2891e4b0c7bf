"""The report's tables: per test set a comparison (rows run × w (× reference), noisy first; by SNR and by
category) with its plots, paired differences with 95% intervals (every run × w against the `baseline` run,
and w against w = 0 within a run; runs named <row>_seed<k> are one row repeated over seeds), each run
folder's own rows, and report.md (a header stating the scale: backbone, steps, data, sampler, N, seeds;
then every set's tables)."""
from __future__ import annotations

import pandas as pd
import torch

from sgmse_nc.audio import list_audio
from sgmse_nc.enhance.core import describe_reference_length
from sgmse_nc.eval import comparison, paired
from sgmse_nc.eval.folder import load_groups, scored_rate
from sgmse_nc.eval.report.plots import plot_snr_bars, plot_spectrograms, plot_vs_w
from sgmse_nc.eval.report.study import Cell, Run, Study, row_and_seed
from sgmse_nc.eval.rows import read_per_file
from sgmse_nc.io import write_text_atomic


def _system(study: Study, run: Run, set_name: str, cell: Cell) -> comparison.System:
    labels = {"run": run.name, "w": f"{cell.w:g}"}
    if len(study.references) > 1:
        labels["reference"] = cell.reference
    notes = [] if run.conditional else [f"{run.name} is an unconditional model: guidance has no effect, so it has "
                                        f"one row (its unconditional score, w = 0)"]
    error = study.results[(run.name, set_name, cell.key)]
    if error:
        return comparison.System(labels, error=error, notes=notes)
    return comparison.System(labels, read_per_file(study.per_file(set_name, run, cell)), notes=notes)


def set_comparison(study: Study, set_name: str, extra=(), only: Run | None = None) -> dict:
    """The comparison of one set: the noisy input, then every run's cells (only one run's when `only`) and
    its `extra` systems (w = auto)."""
    columns = study.groups[set_name]  # grouping -> the manifest's column
    noisy = read_per_file(study.per_file(set_name))
    systems = []
    for run in study.runs if only is None else [only]:
        systems += [_system(study, run, set_name, cell) for cell in study.run_cells(run)]
        systems += [s for s in extra if s.labels["run"] == run.name]
    groups = None
    if columns:
        table = load_groups(study.sets[set_name] / "manifest.csv", list(noisy["id"]), sorted(set(columns.values())))
        groups = pd.DataFrame({name: table[column] for name, column in columns.items()}, index=table.index)
    return comparison.compare(systems, study.metrics, noisy, groups, list(columns),
                              scored_rate(study.per_file(set_name).parent))


def title(study: Study, set_name: str) -> str:
    return f"{set_name}" + (" — ORACLE references (the noise mixed into the input)" if study.oracle else "")


def paired_systems(study: Study, set_name: str, extra=()) -> list[comparison.System]:
    """Every scored cell of the set as a paired-difference system labelled by its row (and seed)."""
    systems = []
    for run in study.runs:
        row, seed = row_and_seed(run.name)
        cells = [_system(study, run, set_name, cell) for cell in study.run_cells(run)]
        for system in cells + [s for s in extra if s.labels["run"] == run.name]:
            labels = {**system.labels, "run": row, **({paired.SEED: seed} if seed is not None else {})}
            systems.append(comparison.System(labels, system.per_file, system.error))
    return systems


def write_paired_tables(study: Study, set_name: str, extra=()) -> str:
    """<set>/paired.{md,csv}: the pairs the study compares (paired.study_pairs), clustered by the manifest's
    noise class or recording column when it has one; returns the Markdown."""
    systems = paired_systems(study, set_name, extra)
    noisy = read_per_file(study.per_file(set_name))
    manifest = study.sets[set_name] / "manifest.csv"
    columns = pd.read_csv(manifest, dtype=str, nrows=0).columns if manifest.is_file() else []
    cluster = paired.cluster_column(columns)
    groups = load_groups(manifest, list(noisy["id"]), [cluster]) if cluster else None
    baseline = study.cfg.get("baseline")
    rows = paired.paired_rows(systems, paired.study_pairs(systems, baseline), study.metrics, groups, cluster)
    return paired.write(rows, study.out_dir / set_name, f"{title(study, set_name)}: paired differences",
                        sample_rate=scored_rate(study.per_file(set_name).parent))


def write_set_tables(study: Study, set_name: str, extra=()) -> dict:
    """<set>/comparison.{md,csv,json} and plots; each run folder gets reports/<out_dir name>/<set>/ of its rows."""
    out = study.out_dir / set_name
    result = set_comparison(study, set_name, extra)
    comparison.write(result, out, title(study, set_name))
    plot_vs_w(result, out / "plot_vs_w.png")
    for run in study.runs:
        plot_snr_bars(result, run.name, out / f"plot_snr_{run.name}.png")
    plot_spectrograms(study, set_name, out / "spectrograms.png")
    write_paired_tables(study, set_name, extra)
    for run in study.runs:  # each run folder gets its own rows
        if run.folder is not None:
            own = set_comparison(study, set_name, extra, only=run)
            comparison.write(own, run.folder / "reports" / study.out_dir.name / set_name,
                             f"{run.name} on {title(study, set_name)}")
    return result


def header(study: Study) -> list[str]:
    cfg, lines = study.cfg, []
    for run in study.runs:
        s = {**run.info.get("sampler", {}), **study.sampler}
        length = describe_reference_length(run.info.get("ref_seconds"), cfg.get("ref_seconds"))
        references = f"; references: {length}" if run.conditional else ""
        lines.append(f"run **{run.name}**: {run.ckpt}; backbone {run.info['backbone']}, encoder "
                     f"{run.info['encoder']}, {run.info['steps']} training steps, data {run.info.get('data', '?')}, "
                     f"training seed {run.info.get('seed', '?')}; sampler {s.get('name', '?')}, N={s.get('N', '?')}"
                     f"{references}")
    lines.append("test sets: " + ", ".join(f"{n} ({p}, {len(list_audio(p / 'noisy'))} files)"
                                           for n, p in study.sets.items()))
    lines.append(f"guidance scales {', '.join(f'{float(w):g}' for w in cfg.guidance)} (0: null condition); "
                 f"reference strategies {', '.join(study.references)}; "
                 f"enhancement seed {cfg.get('seed', 0)}; device {cfg.get('device', 'cpu')}, "
                 f"torch threads {torch.get_num_threads()}")
    return lines


def write_report(study: Study, tables: dict) -> str:
    """report.md: the header and every set's tables; returns its text."""
    oracle = any("oracle" in r for r in study.references) and any(float(w) > 0 for w in study.cfg.guidance)
    parts = ["# Evaluation report" + (" — ORACLE references" if oracle else ""), ""]
    parts += [f"- {line}" for line in header(study)]
    for set_name, result in tables.items():
        parts += ["", comparison.markdown(result, title(study, set_name)), f"![metric vs w]({set_name}/plot_vs_w.png)"]
        paired_md = study.out_dir / set_name / "paired.md"
        if paired_md.is_file():  # written by write_set_tables; its title one level below the report's
            parts += ["", "##" + paired_md.read_text().rstrip("\n")]
    text = "\n".join(parts) + "\n"
    write_text_atomic(study.out_dir / "report.md", text)
    return text
