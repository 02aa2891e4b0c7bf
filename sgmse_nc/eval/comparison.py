"""Comparison tables: several systems scored on one test set, the noisy input first.

A system is one enhanced folder (evaluate.py `--enhanced name=DIR`) or one run × guidance scale ×
reference strategy (sgmse_nc.eval.report). Each is scored on its own (per-file rows, resumable, see
sgmse_nc.eval.folder); the noisy input is scored once; here the per-file tables are joined by id, so the
improvement is the mean of per-file differences. One table overall and one per group column (SNR,
noise category):

    | Run | w | N | PESQ (16 kHz WB) | Δ | ESTOI (10 kHz, pystoi) | Δ | SI-SDR [dB] (16 kHz) | Δ |
    | noisy | – | 6 | 1.20 ± 0.10 |  | ...
    | demo | 1 | 6 | **1.52 ± 0.21** | +0.32 | ...     best mean per column in bold
    | demo | 3 | FAILED | – |  | ...                    a failed system keeps its row; the reason below

Every header names the rate its metric was computed at (the files' rate for SI-SDR: `sample_rate`). Written as
comparison.md / comparison.csv (long form: metric names as in per_file.csv) / comparison.json.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sgmse_nc.eval.metrics import METRICS, metric_header
from sgmse_nc.eval.tables import json_safe, label_order, markdown_table, summarise
from sgmse_nc.io import write_csv, write_text_atomic

NOISY = "noisy"
FAILED = "FAILED"


@dataclass
class System:
    """One row of a comparison: its label columns, and its per-file scores or why there are none."""
    labels: dict[str, str]
    per_file: pd.DataFrame | None = None  # columns id + metrics (extra columns are ignored)
    error: str = ""
    notes: list[str] = field(default_factory=list)


def _joined(system: pd.DataFrame, noisy: pd.DataFrame | None, metrics, groups: pd.DataFrame | None) -> pd.DataFrame:
    table = system[["id", *[m for m in metrics if m in system.columns]]].copy()
    if noisy is not None:
        paired = noisy.set_index("id").reindex(table["id"])
        for m in metrics:
            if m in table.columns and m in paired.columns:
                table[f"noisy_{m}"] = paired[m].to_numpy()
                table[f"delta_{m}"] = table[m] - table[f"noisy_{m}"]
    if groups is not None:
        table = table.join(groups, on="id")
    return table


def compare(systems: list[System], metrics, noisy: pd.DataFrame | None = None, groups: pd.DataFrame | None = None,
            group_by=(), sample_rate: int | None = None) -> dict:
    """The comparison as a dict: {"metrics", "sample_rate", "label_columns", "group_by", "noisy": summary or None,
    "systems": [{"labels", "error", "summary"}]} with summaries as in sgmse_nc.eval.tables.summarise.

    groups: the manifest's group columns indexed by id (sgmse_nc.eval.folder.load_groups), needed for `group_by`.
    sample_rate: the rate the files were scored at (the headers name it for the metrics computed at it).
    """
    metrics, group_by = list(metrics), list(group_by)
    label_columns = list(dict.fromkeys(k for s in systems for k in s.labels))
    result = {"metrics": metrics, "sample_rate": sample_rate, "label_columns": label_columns, "group_by": group_by,
              "noisy": None, "systems": []}
    if noisy is not None:
        result["noisy"] = summarise(_joined(noisy, None, metrics, groups), metrics, group_by)
    for system in systems:
        entry = {"labels": {c: str(system.labels.get(c, "")) for c in label_columns}, "error": system.error,
                 "notes": list(system.notes), "summary": None}
        if system.per_file is not None and not system.error:
            entry["summary"] = summarise(_joined(system.per_file, noisy, metrics, groups), metrics, group_by)
        result["systems"].append(entry)
    return result


# ---------------------------------------------------------------------------------------------- rendering

def _block(summary: dict | None, group_by: str | None, label: str | None) -> dict | None:
    if summary is None:
        return None
    if group_by is None:
        return summary
    return summary["groups"].get(group_by, {}).get(label)


def _rounded(stats: dict, decimals: int) -> float:
    return round(stats["mean"], decimals) + 0.0 if stats["n"] else -math.inf


def _table(comparison: dict, group_by: str | None, label: str | None) -> list[list[str]]:
    """Rows (noisy first) of one table: label columns, N, and per metric `mean ± std` and Δ."""
    metrics, label_columns = comparison["metrics"], comparison["label_columns"]
    rows = []  # (label cells, block or None, error)
    noisy = _block(comparison["noisy"], group_by, label)
    if noisy is not None:
        rows.append(([NOISY] + ["–"] * (len(label_columns) - 1), noisy, ""))
    for system in comparison["systems"]:
        cells = [system["labels"][c] for c in label_columns]
        block = _block(system["summary"], group_by, label)
        if system["summary"] is not None and block is None:
            continue  # this system has no file of this group (e.g. evaluated on a subset)
        rows.append((cells, block, system["error"]))
    best = {}
    for m in metrics:
        decimals = METRICS[m].decimals
        means = [_rounded(b["enhanced" if "enhanced" in b else "noisy"][m], decimals) if b is not None else -math.inf
                 for _, b, _ in rows]
        best[m] = max(means, default=-math.inf)
    table = []
    for i, (cells, block, error) in enumerate(rows):
        if block is None:
            table.append(cells + [FAILED] + ["–", ""] * len(metrics))
            continue
        signal = "enhanced" if "enhanced" in block else "noisy"
        line = cells + [str(block["n_files"])]
        for m in metrics:
            decimals = METRICS[m].decimals
            stats = block[signal][m]
            if stats["n"] == 0:
                line += ["–", ""]
                continue
            text = f"{_rounded(stats, decimals):.{decimals}f} ± {stats['std']:.{decimals}f}"
            if stats["n"] != block["n_files"]:
                text += f" (n={stats['n']})"
            if _rounded(stats, decimals) == best[m] and len(rows) > 1:
                text = f"**{text}**"
            delta = block.get("improvement", {}).get(m) if signal == "enhanced" else None
            line += [text, f"{round(delta['mean'], decimals) + 0.0:+.{decimals}f}" if delta and delta["n"] else ""]
        table.append(line)
    return table


def _header(comparison: dict, first: list[str]) -> list[str]:
    columns = first + [c.capitalize() if c != "w" else "w" for c in comparison["label_columns"]] + ["N"]
    for m in comparison["metrics"]:
        columns += [metric_header(m, comparison.get("sample_rate")), "Δ"]
    return columns


def _group_labels(comparison: dict, key: str) -> list[str]:
    labels = set()
    for summary in [comparison["noisy"], *(s["summary"] for s in comparison["systems"])]:
        if summary is not None:
            labels |= set(summary["groups"].get(key, {}))
    return sorted(labels, key=label_order)


def sections(comparison: dict) -> list[tuple[str | None, list[str], list[list[str]]]]:
    """The comparison's tables as (heading, header, rows of formatted cells; `**x**` marks the best mean): the
    overall one (heading None), then one per group column. Markdown and the listening page render these."""
    out = [(None, _header(comparison, []), _table(comparison, None, None))]
    for key in comparison["group_by"]:
        rows = [[label] + row for label in _group_labels(comparison, key) for row in _table(comparison, key, label)]
        out.append((f"By {key}", _header(comparison, [key]), rows))
    return out


def footer(comparison: dict, notes=()) -> list[str]:
    """The lines under the tables: notes, what ± and Δ mean, failures and each system's notes."""
    lines = list(notes) + ["mean ± std (population std) over files; Δ: mean per-file improvement over the noisy "
                           "input; best mean per column in bold."]
    for system in comparison["systems"]:
        name = ", ".join(f"{k}={v}" for k, v in system["labels"].items())
        if system["error"]:
            lines.append(f"{FAILED} {name}: {system['error']}")
        lines += [f"{name}: {note}" for note in system["notes"]]
    return lines


def markdown(comparison: dict, title: str, notes=()) -> str:
    """The comparison as Markdown: a title, the overall table, one table per group column, notes, failures."""
    parts = [f"## {title}"]
    for heading, header, rows in sections(comparison):
        parts += ["", f"### {heading}", ""] if heading else [""]
        parts.append(markdown_table(header, rows))
    return "\n".join(parts + [""] + [f"- {line}" for line in footer(comparison, notes)]) + "\n"


def long_rows(comparison: dict) -> pd.DataFrame:
    """One row per (group, system, signal, metric): what the CSV holds."""
    rows = []
    entries = ([({c: (NOISY if i == 0 else "") for i, c in enumerate(comparison["label_columns"])}, "",
                 comparison["noisy"])] if comparison["noisy"] is not None else [])
    entries += [(s["labels"], s["error"], s["summary"]) for s in comparison["systems"]]
    for labels, error, summary in entries:
        if summary is None:
            rows.append({"group_by": "all", "group": "all", **labels, "signal": "", "metric": "", "mean": math.nan,
                         "std": math.nan, "n": 0, "n_files": 0, "error": error})
            continue
        blocks = [("all", "all", summary)] + [(k, lab, b) for k, groups in summary["groups"].items()
                                              for lab, b in groups.items()]
        for key, label, block in blocks:
            for signal in ("enhanced", "noisy", "improvement"):
                for m, stats in block.get(signal, {}).items():
                    rows.append({"group_by": key, "group": label, **labels, "signal": signal, "metric": m, **stats,
                                 "n_files": block["n_files"], "error": error})
    return pd.DataFrame(rows)


def write(comparison: dict, out_dir, title: str, notes=(), stem: str = "comparison") -> str:
    """comparison.md / .csv / .json into out_dir (atomically); returns the Markdown."""
    out_dir = Path(out_dir)
    text = f"# {title}\n\n" + markdown(comparison, title="All files", notes=notes)
    write_text_atomic(out_dir / f"{stem}.md", text)
    write_csv(long_rows(comparison), out_dir / f"{stem}.csv")
    write_text_atomic(out_dir / f"{stem}.json",
                      json.dumps(json_safe({"title": title, "notes": list(notes), **comparison}), indent=2) + "\n")
    return text
