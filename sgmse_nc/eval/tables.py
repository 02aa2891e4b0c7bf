"""Summary tables of per-file scores: mean ± std (population std) overall and per group, as a dict, Markdown,
long-form rows and JSON; `markdown_table` is the one Markdown table writer of every report.

A summary: {"n_files", "enhanced" / "noisy" / "improvement": {metric: {mean, std, n}},
"groups": {group key: {label: block of the same form}}}. Group labels sort numbers numerically
(0, 5, 10 dB), then text (`label_order`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sgmse_nc.eval.metrics import METRICS, metric_header

# summary block name -> per-file column prefix; rows of the tables appear in this order
SIGNALS = {"noisy": "noisy_", "enhanced": "", "improvement": "delta_"}


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of already formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def label_order(label: str):
    parts = []
    for part in label.split("/"):  # numbers in numeric order (0, 5, 10 dB), then text
        try:
            parts.append((0, float(part), ""))
        except ValueError:
            parts.append((1, 0.0, part))
    return parts


def group_labels(table: pd.DataFrame, key: str) -> pd.Series:
    """Each row's label of group key `key` ("a+b": the values of columns a and b joined by '/')."""
    return table[key.split("+")].astype(str).agg("/".join, axis=1)


def _stats(values: pd.Series) -> dict:
    values = values.dropna()
    n = len(values)
    # population std (ddof 0), as the SGMSE+ evaluation scripts report it
    return {"mean": float(values.mean()) if n else math.nan, "std": float(values.std(ddof=0)) if n else math.nan,
            "n": n}


def _summarise(table: pd.DataFrame, metrics) -> dict:
    block = {"n_files": len(table)}
    for signal, prefix in SIGNALS.items():
        if f"{prefix}{metrics[0]}" in table.columns:
            block[signal] = {m: _stats(table[f"{prefix}{m}"]) for m in metrics}
    return block


def summarise(table: pd.DataFrame, metrics, group_by=()) -> dict:
    """The summary (module docstring) of a per-file table with columns <metric>, noisy_<metric>, delta_<metric>."""
    summary = _summarise(table, metrics)
    summary["groups"] = {}
    for key in group_by:
        labels = group_labels(table, key)
        ordered = sorted(labels.unique(), key=label_order)
        summary["groups"][key] = {label: _summarise(table[labels == label], metrics) for label in ordered}
    return summary


def _cell(stats: dict, decimals: int, n_files: int) -> str:
    if stats["n"] == 0:
        return "–"
    mean = round(stats["mean"], decimals) + 0.0  # + 0.0 turns a rounded -0.0 into 0.0
    text = f"{mean:.{decimals}f} ± {stats['std']:.{decimals}f}"
    return text + (f" (n={stats['n']})" if stats["n"] != n_files else "")


def _blocks(summary: dict):
    """(group_by, group label, block) for the overall block and every group."""
    yield "all", "all", summary
    for key, groups in summary["groups"].items():
        for label, block in groups.items():
            yield key, label, block


def summary_markdown(summary: dict, metrics) -> str:
    """One row per group and signal: Group | Signal | N | mean ± std per metric; the header names the rate each
    metric was computed at (sgmse_nc.eval.metrics.metric_header; the files' rate from the summary's settings)."""
    rate = summary.get("settings", {}).get("sample_rate")
    header = ["Group", "Signal", "N"] + [metric_header(m, rate) for m in metrics]
    rows = []
    for key, label, block in _blocks(summary):
        group = "all" if key == "all" else f"{key}={label}"
        for signal in SIGNALS:
            if signal in block:
                cells = [_cell(block[signal][m], METRICS[m].decimals, block["n_files"]) for m in metrics]
                rows.append([group, signal, str(block["n_files"]), *cells])
    return markdown_table(header, rows)


def summary_rows(summary: dict, metrics) -> pd.DataFrame:
    """The summary in long form: group_by, group, signal, metric, mean, std, n."""
    rows = [{"group_by": key, "group": label, "signal": signal, "metric": m, **block[signal][m]}
            for key, label, block in _blocks(summary) for signal in SIGNALS if signal in block for m in metrics]
    return pd.DataFrame(rows)


def json_safe(value):
    """`value` with NaN/Inf as None and numpy integers as int (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    if isinstance(value, np.integer):
        return int(value)
    return value
