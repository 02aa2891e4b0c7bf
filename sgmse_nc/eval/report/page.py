"""The listening page: report.html beside report.md, one static HTML file that works opened from disk (relative
links only, inline CSS, no script, nothing from the network). It holds the report's header and every set's tables
(rendered from the same comparison data as report.md), the set's plots, and per set a few example files chosen
by rule, each with audio players and spectrograms of the noisy input, every run × w, the clean speech and the
reference(s).

The rule (never hand-picked): per set, the best system is the run × w (× reference) with the largest mean
per-file improvement over the noisy input in the report's first metric (ties: the first in table order); its
files, ordered by that improvement (ties by id, files without a score left out), are taken at rank
round(p/100 · (n − 1)) for p = 10, 50, 90 (`percentile_files`).

What it writes beside report.md (nothing outside the report folder is linked, so the folder can be moved):

    report.html
    listen/<set>/<file id>/<signal>.wav   mono 16-bit copies of the files played (clipped at full scale)
    listen/<set>/<file id>/<signal>.png   their spectrograms (sgmse_nc.eval.report.plots.draw_spectrogram)

Resumable: a copy or spectrogram newer than its source is kept; files of examples no longer chosen are removed.
"""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from sgmse_nc.audio import AUDIO_EXTENSIONS, audio_info, read_audio, write_audio
from sgmse_nc.eval import comparison
from sgmse_nc.eval.metrics import METRICS
from sgmse_nc.eval.plots import save_figure
from sgmse_nc.eval.report.plots import draw_spectrogram
from sgmse_nc.eval.report.study import ORACLE_MIXED_NOISE, Study
from sgmse_nc.eval.report.tables import header, title
from sgmse_nc.eval.rows import read_per_file
from sgmse_nc.io import write_text_atomic
from sgmse_nc.spec import Spectrogram

PAGE = "report.html"
LISTEN = "listen"  # the folder of the page's audio copies and spectrograms
PERCENTILES = (10, 50, 90)

STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 110em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
.plots img { max-width: 100%; margin: 0.3em 0; display: block; }
.signals { display: flex; flex-wrap: wrap; gap: 0.8em; }
figure { margin: 0; padding: 0.4em; border: 1px solid #ddd; width: 18em; }
figure img { width: 100%; display: block; margin-top: 0.3em; }
figure audio { width: 100%; }
figcaption { font-size: 0.85em; }
.rule { background: #f7f7e8; padding: 0.5em; border-left: 4px solid #bb9; }
"""


def percentile_files(improvement: pd.Series, percentiles=PERCENTILES) -> list[tuple[int, str]]:
    """(p, file id) per percentile p of a per-file improvement (index: file id): the files ordered by
    improvement (ties by id; NaN left out), the one at rank round(p/100 · (n − 1)); a file already chosen for a
    lower p is not listed again."""
    values = improvement.dropna()
    order = sorted(values.index, key=lambda file_id: (values[file_id], file_id))
    chosen: list[tuple[int, str]] = []
    for p in percentiles if order else ():
        file_id = order[math.floor(p / 100 * (len(order) - 1) + 0.5)]  # round half up, not to even
        if file_id not in [c for _, c in chosen]:
            chosen.append((p, file_id))
    return chosen


@dataclass
class Signal:
    """One audio player of an example: a label, the folder its file comes from, the scores shown with it."""
    label: str
    name: str  # file stem under listen/<set>/<id>/
    folder: Path
    scores: pd.DataFrame | None = None  # the per-file rows (index id) of an enhanced or noisy folder


@dataclass
class Best:
    label: str
    improvement: pd.Series  # per file id


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def enhanced_signals(study: Study, set_name: str) -> list[Signal]:
    """Every run × w (× reference) of the set that was enhanced, once per distinct folder (an unconditional
    run's one folder serves all its cells), in table order."""
    out, seen = [], set()
    for run in study.runs:
        for cell in study.cells:
            folder = study.work(set_name, run, cell)
            if folder in seen or study.results.get((run.name, set_name, cell.key)):
                continue  # served already, or failed (its row in the tables says why)
            seen.add(folder)
            if not run.conditional:
                label = f"{run.name} (unconditional)"
            else:
                label = f"{run.name} w={cell.w:g}" + (
                    f" ({cell.reference})" if len(study.references) > 1 and cell.w > 0 else "")
            per_file = read_per_file(study.per_file(set_name, run, cell)).set_index("id")
            out.append(Signal(label, _slug(f"{run.name}_{folder.name}"), folder / "enhanced", per_file))
    return out


def best_system(noisy: pd.Series, systems: list[Signal], metric: str) -> Best | None:
    """The system with the largest mean per-file improvement in `metric` over the noisy scores (index: file id;
    ties: the first system); None when no system has a score."""
    best = None
    for signal in systems:
        delta = signal.scores[metric] - noisy.reindex(signal.scores.index)
        if delta.notna().any() and (best is None or delta.mean() > best.improvement.mean()):
            best = Best(signal.label, delta)
    return best


def _source(folder: Path, file_id: str) -> Path | None:
    for ext in AUDIO_EXTENSIONS:
        if (folder / f"{file_id}{ext}").is_file():
            return folder / f"{file_id}{ext}"
    return None


def _fresh(target: Path, source: Path) -> bool:
    return target.is_file() and target.stat().st_mtime_ns >= source.stat().st_mtime_ns


def copy_for_player(source: Path, target: Path) -> None:
    """A mono 16-bit wav of `source` at its own rate (kept when newer than the source)."""
    if not _fresh(target, source):
        rate = audio_info(source).samplerate
        write_audio(target, read_audio(source, sample_rate=None, mono="mean", min_samples=0), rate, "PCM_16")


def spectrogram_png(source: Path, target: Path) -> None:
    """The spectrogram of `source` as a small PNG (kept when newer than the source)."""
    from matplotlib.figure import Figure

    if _fresh(target, source):
        return
    fig = Figure(figsize=(3.2, 1.6), layout="tight")
    ax = fig.subplots()
    ax.set_xticks([])
    ax.set_yticks([])
    draw_spectrogram(ax, read_audio(source, sample_rate=None, mono="mean", min_samples=0), Spectrogram())
    save_figure(fig, target, dpi=100)


def _href(path: Path, root: Path) -> str:
    return quote(path.relative_to(root).as_posix())


def _cell_html(text: str) -> str:
    """A table cell or header line: escaped, with the tables' `**best**` as bold."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


def _table_html(head: list[str], rows: list[list[str]]) -> str:
    lines = ["<table>", "<tr>" + "".join(f"<th>{_cell_html(h)}</th>" for h in head) + "</tr>"]
    lines += ["<tr>" + "".join(f"<td>{_cell_html(c)}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join(lines + ["</table>"])


def _scores_text(study: Study, scores: pd.DataFrame | None, file_id: str) -> str:
    if scores is None or file_id not in scores.index:
        return ""
    row = scores.loc[file_id]
    return " · ".join(f"{METRICS[m].label} {row[m]:.{METRICS[m].decimals}f}" for m in study.metrics
                      if m in row and pd.notna(row[m]))


def rule_text(study: Study, best: Best | None) -> str:
    metric = METRICS[study.metrics[0]].label
    text = (f"Examples chosen by rule, never by hand: the best system is the run × w with the largest mean per-file "
            f"{metric} improvement over the noisy input; its files, ordered by that improvement, are taken at "
            f"rank round(p/100 · (n − 1)) for p = {', '.join(map(str, PERCENTILES))}.")
    if best is None:
        return text + " No system of this set has scores, so there are no examples."
    return text + (f" Best system here: {best.label} (mean {metric} improvement {best.improvement.mean():+.2f} over "
                   f"{int(best.improvement.notna().sum())} files).")


def set_examples(study: Study, set_name: str, keep: set[Path]) -> list[str]:
    """The examples section of one set (HTML lines); the files it links are written and added to `keep`."""
    out, test_set = study.out_dir, study.sets[set_name]
    enhanced = enhanced_signals(study, set_name)
    noisy_scores = read_per_file(study.per_file(set_name)).set_index("id")
    best = best_system(noisy_scores[study.metrics[0]], enhanced, study.metrics[0])
    lines = ["<h3>Examples</h3>", f'<p class="rule">{html.escape(rule_text(study, best))}</p>']
    if best is None:
        return lines
    signals = [Signal("noisy", "noisy", test_set / "noisy", noisy_scores), *enhanced]
    signals.append(Signal("clean", "clean", test_set / "clean"))
    for reference in study.references if any(c.w > 0 for c in study.cells) else []:
        oracle = " — ORACLE: the noise mixed into the input" if reference == ORACLE_MIXED_NOISE else ""
        signals.append(Signal(f"reference ({reference}){oracle}", _slug(f"reference_{reference}"),
                              study.reference_dir(set_name, reference)))
    metric = METRICS[study.metrics[0]]
    for p, file_id in percentile_files(best.improvement):
        folder = out / LISTEN / set_name / file_id
        lines.append(f"<h4>{p}th percentile: {html.escape(file_id)} ({metric.label} improvement "
                     f"{round(best.improvement[file_id], metric.decimals) + 0.0:+.{metric.decimals}f} with "
                     f"{html.escape(best.label)})</h4>")
        lines.append('<div class="signals">')
        for signal in signals:
            source = _source(signal.folder, file_id)
            caption = html.escape(signal.label)
            scores = _scores_text(study, signal.scores, file_id)
            caption += f"<br>{html.escape(scores)}" if scores else ""
            if source is None:
                lines.append(f"<figure><figcaption>{caption}<br>(no file {html.escape(file_id)} in "
                             f"{html.escape(str(signal.folder))})</figcaption></figure>")
                continue
            wav, png = folder / f"{signal.name}.wav", folder / f"{signal.name}.png"
            copy_for_player(source, wav)
            spectrogram_png(source, png)
            keep.update((wav, png))
            lines.append(f'<figure><figcaption>{caption}</figcaption><audio controls preload="metadata" '
                         f'src="{_href(wav, out)}"></audio><img alt="spectrogram: {html.escape(signal.label)}" '
                         f'src="{_href(png, out)}"></figure>')
        lines.append("</div>")
    return lines


def diagnostics_section(study: Study) -> list[str]:
    """The embedding diagnostics' plots of each run that has them (sgmse_nc.eval.report.embeddings)."""
    out, lines = study.out_dir, []
    for run in study.runs:
        folder = out / "diagnostics" / run.name
        plots = sorted(folder.glob("*.png"))
        if plots:
            note = folder / "diagnostics.md"
            link = f' (<a href="{_href(note, out)}">diagnostics.md</a>)' if note.is_file() else ""
            lines += [f"<h3>{html.escape(run.name)}{link}</h3>", '<div class="plots">'] + [
                f'<img alt="{html.escape(p.stem)}" src="{_href(p, out)}">' for p in plots] + ["</div>"]
    return ['<section id="diagnostics"><h2>Embedding diagnostics</h2>', *lines, "</section>"] if lines else []


def _remove_unlisted(folder: Path, keep: set[Path]) -> None:
    """Files of examples no longer chosen (the listen/ folder is the page's own)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file() and path not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def write_page(study: Study, tables: dict) -> Path:
    """report.html (module docstring) from the study and its per-set comparisons; returns its path."""
    out = study.out_dir
    oracle = " — ORACLE references" if study.oracle else ""
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Evaluation report{oracle}</title><style>{STYLE}</style></head><body>",
             f"<h1>Evaluation report{oracle}</h1>", "<ul>"]
    parts += [f"<li>{_cell_html(line)}</li>" for line in header(study)] + ["</ul>"]
    parts.append('<p>The same tables as <a href="report.md">report.md</a>; sets: ' + ", ".join(
        f'<a href="#{quote(_slug(name))}">{html.escape(name)}</a>' for name in tables) + ".</p>")
    keep: set[Path] = set()
    for set_name, result in tables.items():
        parts.append(f'<section id="{_slug(set_name)}"><h2>{html.escape(title(study, set_name))}</h2>')
        for heading, head, rows in comparison.sections(result):
            parts += ([f"<h3>{html.escape(heading)}</h3>"] if heading else []) + [_table_html(head, rows)]
        parts.append("<ul>" + "".join(f"<li>{_cell_html(line)}</li>" for line in comparison.footer(result)) + "</ul>")
        files = [out / set_name / f"{stem}.{ext}" for stem, exts in (("comparison", ("md", "csv", "json")),
                                                                     ("paired", ("md", "csv"))) for ext in exts]
        parts.append("<p>Tables as files: " + ", ".join(f'<a href="{_href(f, out)}">{f.name}</a>' for f in files
                                                        if f.is_file()) + "</p>")
        plots = sorted((out / set_name).glob("*.png"), key=lambda p: (p.name != "plot_vs_w.png", p.name))
        parts.append('<div class="plots">' + "".join(
            f'<img alt="{html.escape(p.stem)}" src="{_href(p, out)}">' for p in plots) + "</div>")
        parts += set_examples(study, set_name, keep)
        parts.append("</section>")
    parts += diagnostics_section(study)
    parts.append("</body></html>")
    _remove_unlisted(out / LISTEN, keep)
    write_text_atomic(out / PAGE, "\n".join(parts) + "\n")
    return out / PAGE
