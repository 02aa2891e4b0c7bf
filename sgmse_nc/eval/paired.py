"""Paired differences between systems scored on the same files, with 95% intervals.

A study asks whether one system beats another (a conditional run vs the baseline the study names, a
guidance scale w vs w = 0 of the same run). Both were scored on the same files, so the question is
answered file by file: d_i = metric(A, file i) − metric(B, file i), and the table gives the mean of d_i
with three 95% intervals:

    files      t interval over the files' paired differences (treats files as independent)
    clustered  cluster-robust (CR1) interval of the same mean, over the G groups of a manifest column
               (noise class or recording: files that share a noise are not independent); t with G − 1
               degrees of freedom, so a handful of classes gives an honestly wide interval
    seeds      when the runs were repeated over seeds (the system's `seed` label): a t interval over the
               S per-seed mean differences (training randomness; d_i above is then averaged over seeds)

An interval that contains 0 does not tell the two systems apart. Every table says this below itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from sgmse_nc.data.manifest import NOISE_CLASS_COLUMNS
from sgmse_nc.eval.comparison import System
from sgmse_nc.eval.metrics import METRICS, metric_header
from sgmse_nc.io import write_csv, write_text_atomic

LEVEL = 0.95
# manifest columns that name the noise a file was mixed with, coarsest first: the first one present clusters
CLUSTER_COLUMNS = (*NOISE_CLASS_COLUMNS, "noise_file", "recording")
SEED = "seed"  # a system label: systems equal but for it are one system repeated over seeds


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    units: int  # files, clusters or seeds the interval is over


def t_interval(values, level: float = LEVEL) -> Interval:
    """Mean and t interval over independent values (NaN bounds below two values)."""
    values = np.asarray(values, dtype=float)
    n, mean = values.size, float(values.mean()) if values.size else math.nan
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def clustered_interval(values, clusters, level: float = LEVEL) -> Interval:
    """Mean of `values` with a cluster-robust (CR1) interval: Var = G/(G−1) · Σ_g (Σ_{i∈g} e_i)² / n², e the
    residuals from the mean, t with G − 1 degrees of freedom (NaN bounds below two clusters)."""
    values = np.asarray(values, dtype=float)
    clusters = np.asarray(clusters)
    n, mean = values.size, float(values.mean()) if values.size else math.nan
    sums = pd.Series(values - mean).groupby(clusters).sum().to_numpy()
    g = sums.size
    if g < 2:
        return Interval(mean, math.nan, math.nan, g)
    se = math.sqrt(g / (g - 1) * float((sums ** 2).sum())) / n
    half = stats.t.ppf(0.5 + level / 2, g - 1) * se
    return Interval(mean, mean - half, mean + half, g)


def cluster_column(columns) -> str | None:
    """The manifest column to cluster by (noise class before recording), None when there is none."""
    return next((c for c in CLUSTER_COLUMNS if c in set(columns)), None)


# ------------------------------------------------------------------------------------------- the pairs

def _key(labels: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in labels.items() if k != SEED))


def study_pairs(systems: list[System], baseline: str | None = None) -> list[tuple[dict, dict, str]]:
    """The pairs a study compares, as (labels of A, labels of B, what B is), seeds left out of the labels:
    every run × w against the `baseline` run (its row at the same w, else its first row), and every w ≠ 0
    against w = 0 of the same run (and reference)."""
    rows = list(dict.fromkeys(_key(s.labels) for s in systems if s.per_file is not None and not s.error))
    label = [dict(r) for r in rows]
    pairs = []
    for a in label:
        run, w = a.get("run"), a.get("w")
        if baseline is not None and run != baseline:
            own = [b for b in label if b.get("run") == baseline]
            match = next((b for b in own if b.get("w") == w), own[0] if own else None)
            if match is not None:
                pairs.append((a, match, f"baseline {baseline}"))
        if w not in (None, "0"):
            zero = next((b for b in label if b.get("run") == run and b.get("w") == "0"
                         and b.get("reference", "null") in ("null", a.get("reference", "null"))), None)
            zero = zero or next((b for b in label if b.get("run") == run and b.get("w") == "0"), None)
            if zero is not None:
                pairs.append((a, zero, "w=0"))
    return pairs


def _by_seed(systems: list[System], labels: dict) -> dict[str, pd.DataFrame]:
    key = _key(labels)
    return {str(s.labels.get(SEED, "")): s.per_file for s in systems
            if s.per_file is not None and not s.error and _key(s.labels) == key}


def paired_rows(systems: list[System], pairs, metrics, groups: pd.DataFrame | None = None,
                cluster: str | None = None, level: float = LEVEL) -> list[dict]:
    """One row per (pair, metric): mean paired difference A − B with its intervals (see the module doc).

    groups: the manifest's columns indexed by id; `cluster` one of them (None: cluster_column(groups))."""
    if cluster is None and groups is not None:
        cluster = cluster_column(groups.columns)
    rows = []
    for a_labels, b_labels, against in pairs:
        a_seeds, b_seeds = _by_seed(systems, a_labels), _by_seed(systems, b_labels)
        seeds = [(s, s) for s in a_seeds if s in b_seeds]
        if not seeds and len(b_seeds) == 1:  # a baseline scored once is paired with every seed of A
            seeds = [(s, next(iter(b_seeds))) for s in a_seeds]
        for metric in metrics:
            per_seed = []
            for sa, sb in seeds:
                a, b = a_seeds[sa], b_seeds[sb]
                if metric not in a.columns or metric not in b.columns:
                    continue
                joined = a[["id", metric]].merge(b[["id", metric]], on="id", suffixes=("_a", "_b"))
                d = (joined[f"{metric}_a"] - joined[f"{metric}_b"]).to_numpy()
                keep = np.isfinite(d)
                per_seed.append(pd.Series(d[keep], index=joined["id"][keep].to_numpy()))
            if not per_seed:
                continue
            per_file = pd.concat(per_seed, axis=1).mean(axis=1)  # d_i averaged over the seeds that scored file i
            files = t_interval(per_file.to_numpy(), level)
            row = {"a": a_labels, "b": b_labels, "against": against, "metric": metric, "n_files": files.units,
                   "n_seeds": len(per_seed), "mean": files.mean, "files": files, "cluster_by": None,
                   "clustered": None, "seeds": None}
            if cluster is not None and groups is not None and cluster in groups.columns:
                labels = groups[cluster].reindex(per_file.index)
                if labels.notna().all():
                    row["cluster_by"] = cluster
                    row["clustered"] = clustered_interval(per_file.to_numpy(), labels.to_numpy(), level)
            if len(per_seed) > 1:
                row["seeds"] = t_interval([s.mean() for s in per_seed], level)
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------- rendering

def _name(labels: dict) -> str:
    return " ".join(str(v) if k in ("run", "system") else f"{k}={v}" for k, v in labels.items())


def _ci(interval: Interval | None, decimals: int) -> str:
    if interval is None:
        return "–"
    if math.isnan(interval.low):
        return f"n/a ({interval.units})"
    return f"[{interval.low:+.{decimals}f}, {interval.high:+.{decimals}f}]"


def markdown(rows: list[dict], level: float = LEVEL, sample_rate: int | None = None) -> str:
    """The paired differences as one Markdown table with a legend that says what every number is; each metric
    named with the rate it was computed at (`sample_rate`: the files')."""
    if not rows:
        return ""
    pct = f"{level:.0%}"
    cluster_by = sorted({r["cluster_by"] for r in rows if r["cluster_by"]})
    clustered = f"{pct} CI by {'/'.join(cluster_by)} (G)" if cluster_by else f"{pct} CI clustered"
    header = ["A", "B", "Metric", "Files", "Seeds", "Mean Δ (A − B)", f"{pct} CI files", clustered, f"{pct} CI seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        label, decimals = metric_header(r["metric"], sample_rate), METRICS[r["metric"]].decimals
        clustered_text = _ci(r["clustered"], decimals)
        if r["clustered"] is not None and not math.isnan(r["clustered"].low):
            clustered_text += f" (G={r['clustered'].units})"
        lines.append("| " + " | ".join([
            _name(r["a"]), f"{_name(r['b'])} ({r['against']})", label, str(r["n_files"]), str(r["n_seeds"]),
            f"{r['mean']:+.{decimals}f}", _ci(r["files"], decimals), clustered_text, _ci(r["seeds"], decimals)]) + " |")
    legend = [
        f"Δ: per file, metric of A minus metric of B on the same file (averaged over seeds when there are "
        f"several), then the mean over files.",
        f"{pct} CI files: t interval over the files' paired differences, as if files were independent.",
        (f"{pct} CI by {'/'.join(cluster_by)}: cluster-robust (CR1) interval over the G groups of that manifest "
         f"column (files sharing a noise are not independent), t with G − 1 degrees of freedom."
         if cluster_by else "no manifest column names the noise class or recording: no clustered interval."),
        f"{pct} CI seeds: t interval over the per-seed mean differences (– with one seed).",
        "An interval that contains 0 does not tell A and B apart; n/a: too few units for an interval."]
    return "\n".join(lines + [""] + [f"- {line}" for line in legend]) + "\n"


def long_rows(rows: list[dict]) -> pd.DataFrame:
    """One CSV row per (pair, metric) with every bound."""
    out = []
    for r in rows:
        entry = {"a": _name(r["a"]), "b": _name(r["b"]), "against": r["against"], "metric": r["metric"],
                 "n_files": r["n_files"], "n_seeds": r["n_seeds"], "mean": r["mean"], "cluster_by": r["cluster_by"]}
        for kind in ("files", "clustered", "seeds"):
            interval = r[kind]
            entry[f"{kind}_low"] = interval.low if interval else math.nan
            entry[f"{kind}_high"] = interval.high if interval else math.nan
            entry[f"{kind}_units"] = interval.units if interval else 0
        out.append(entry)
    return pd.DataFrame(out)


def write(rows: list[dict], out_dir, title: str, stem: str = "paired", sample_rate: int | None = None) -> str:
    """paired.md / paired.csv into out_dir (atomically); returns the Markdown."""
    out_dir = Path(out_dir)
    text = f"# {title}\n\n" + (markdown(rows, sample_rate=sample_rate) or "No pair of systems to compare.\n")
    write_text_atomic(out_dir / f"{stem}.md", text)
    write_csv(long_rows(rows), out_dir / f"{stem}.csv")
    return text
