"""Plots of folder scores (box plots per metric, noisy beside enhanced, per group) and the one way every scoring
plot is saved (`save_figure`: PNG, atomically). matplotlib's Figure is used without pyplot, so the user's global
backend is never touched."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from sgmse_nc.eval.metrics import METRICS
from sgmse_nc.eval.tables import SIGNALS, group_labels, label_order
from sgmse_nc.io import atomic_path


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """A matplotlib Figure as PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


def plot_metrics(table: pd.DataFrame, metrics, out_dir: Path, group_key: str | None = None) -> list[Path]:
    """One box plot per metric: noisy and enhanced side by side, per group of `group_key` (or overall)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    labels = group_labels(table, group_key) if group_key else pd.Series("all", index=table.index)
    categories = sorted(labels.unique(), key=label_order)
    signals = [(s, p) for s, p in SIGNALS.items() if s != "improvement" and f"{p}{metrics[0]}" in table.columns]
    colours = {"noisy": "tab:gray", "enhanced": "tab:blue"}
    paths = []
    for m in metrics:
        fig = Figure(figsize=(max(4.0, 1.2 * len(categories) * len(signals)), 3.5), layout="tight")
        ax = fig.subplots()
        for j, (signal, prefix) in enumerate(signals):
            data = [table.loc[labels == c, f"{prefix}{m}"].dropna().to_numpy() for c in categories]
            positions = [i * (len(signals) + 1) + j for i in range(len(categories))]
            boxes = ax.boxplot(data, positions=positions, widths=0.8, patch_artist=True, showfliers=True)
            for box in boxes["boxes"]:
                box.set_facecolor(colours[signal])
        ax.set_xticks([i * (len(signals) + 1) + (len(signals) - 1) / 2 for i in range(len(categories))],
                      categories)
        ax.set_xlabel(group_key or "")
        ax.set_ylabel(METRICS[m].label)
        ax.legend(handles=[Patch(color=colours[s], label=s) for s, _ in signals], loc="best")
        path = out_dir / f"plot_{m}.png"
        save_figure(fig, path)
        paths.append(path)
    return paths
