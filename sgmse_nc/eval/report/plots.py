"""The report's plots of one test set: metric vs guidance scale (plot_vs_w.png), bars per SNR for each run
(plot_snr_<run>.png) and log spectrograms of a few files (spectrograms.png: noisy, each run's enhanced at the
largest w (an unconditional run's one output), clean, reference)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sgmse_nc.audio import list_audio, read_audio
from sgmse_nc.eval.metrics import METRICS
from sgmse_nc.eval.plots import save_figure
from sgmse_nc.eval.report.study import Study
from sgmse_nc.eval.tables import label_order
from sgmse_nc.spec import Spectrogram, decibels


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
            if len(points) == 1 and len(lines) > 1:  # one scale (an unconditional model): a level across w
                ax.axhline(points[0][1][m]["mean"], linestyle="-.", label=f"{name} (one row)")
                continue
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


def spectrogram_columns(study: Study, set_name: str) -> list[tuple[str, Path]]:
    """(title, folder) of the spectrogram panel's columns: noisy, each run's enhanced at the largest w (an
    unconditional run's one output), clean, the reference."""
    test_set = study.sets[set_name]
    cell = max(study.cells, key=lambda c: c.w)
    ref_dir = study.reference_dir(set_name, cell.reference)
    columns = [("noisy", test_set / "noisy")]
    columns += [(f"{run.name} w={cell.w:g}" if run.conditional else f"{run.name} (unconditional)",
                 study.work(set_name, run, cell) / "enhanced") for run in study.runs]
    return columns + [("clean", test_set / "clean")] + ([(f"reference ({cell.reference})", ref_dir)] if ref_dir else [])


def draw_spectrogram(ax, wav, spectrogram: Spectrogram) -> None:
    """The log-magnitude spectrogram of a wav on an axis: the project's STFT, one colour scale (-80 to 20 dB)
    for every panel of the report and the listening page."""
    ax.imshow(decibels(spectrogram.stft(wav)).numpy(), origin="lower", aspect="auto", vmin=-80, vmax=20,
              cmap="magma")


def plot_spectrograms(study: Study, set_name: str, path: Path) -> None:
    """Rows: a few files; columns: spectrogram_columns."""
    from matplotlib.figure import Figure

    test_set = study.sets[set_name]
    count = int(study.cfg.get("spectrogram_files", 2))
    files = [f.relative_to(test_set / "noisy") for f in list_audio(test_set / "noisy")][:count]
    columns = spectrogram_columns(study, set_name)
    if not files:
        return
    spectrogram = Spectrogram()  # the project's STFT settings (n_fft 510, hop 128)
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
            draw_spectrogram(ax, read_audio(folder / rel, min_samples=0), spectrogram)
            ax.set_title(f"{name}\n{rel.with_suffix('').as_posix()}" if i == 0 else rel.with_suffix("").as_posix(),
                         fontsize="small")
    save_figure(fig, path, dpi=110)
