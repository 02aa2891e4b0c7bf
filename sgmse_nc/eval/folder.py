"""Folder evaluation: enhanced vs clean (and the noisy input beside it) -> per-file CSV, summary tables, plots.

Files are paired by their path relative to each folder, without the extension (the same `id` the
datasets use). Outputs go to `out_dir` only (never into an input folder), each written atomically:

    per_file.csv   id, group columns, metrics, noisy_<metric>, delta_<metric>, errors, key
    summary.md     mean ± std table (overall and per group)   summary.json / summary.csv: the same numbers
    plot_<metric>.png

The per-file CSV is saved every few files, so an interrupted run resumes: a row is reused while the
three files it was computed from keep their path, size and modification time (its `key`).
"""
from __future__ import annotations

import hashlib
import json
import math
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sgmse_nc.audio import SAMPLE_RATE, AudioError, audio_info, list_audio, read_audio
from sgmse_nc.io import atomic_path, remove_leftovers, write_text_atomic
from sgmse_nc.eval.metrics import DEFAULT_METRICS, LENGTH_TOLERANCE, METRIC_INFO, compute_metrics, lengths_differ

PER_FILE_CSV = "per_file.csv"
CHECKPOINT_EVERY = 25  # rows computed between saves of the per-file CSV
# summary block name -> per-file column prefix; rows of the tables appear in this order
SIGNALS = {"noisy": "noisy_", "enhanced": "", "improvement": "delta_"}


class EvaluationError(AudioError):
    """A user-facing problem with the evaluation's folders or manifest; the message names the fix."""


@dataclass(frozen=True)
class Pair:
    id: str
    enhanced: Path
    clean: Path
    noisy: Path | None = None

    def cache_key(self, sample_rate: int) -> str:
        """Changes when any of the files is replaced or touched, or when the folders change."""
        parts = [str(sample_rate)]
        for path in (self.enhanced, self.clean, self.noisy):
            if path is not None:
                stat = path.stat()
                parts.append(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}")
        return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- pairing

def _show(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def index_folder(folder: Path, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise EvaluationError(f"{role} folder {folder} not found. Check the path.")
    files = {}
    for path in list_audio(folder):
        file_id = path.relative_to(folder).with_suffix("").as_posix()
        if file_id in files:
            raise EvaluationError(f"{files[file_id]} and {path}: two files with the same name in the {role} "
                                  f"folder. Keep one of them.")
        files[file_id] = path
    if not files:
        raise EvaluationError(f"{role} folder {folder} holds no .wav/.flac files. Check the path.")
    return files


def pair_files(enhanced_dir, clean_dir, noisy_dir=None, allow_missing: bool = False) -> tuple[list[Pair], int]:
    """Pairs by relative path; returns (pairs sorted by id, number of files skipped).

    Files without a counterpart are an error listing them, unless `allow_missing` (then the ids
    present in all given folders are evaluated and the others counted as skipped). Extra files in
    the noisy folder are ignored: it may hold more than what was enhanced.
    """
    enhanced_dir, clean_dir = Path(enhanced_dir), Path(clean_dir)
    enhanced, clean = index_folder(enhanced_dir, "enhanced"), index_folder(clean_dir, "clean")
    noisy = index_folder(Path(noisy_dir), "noisy") if noisy_dir is not None else None
    only_clean, only_enhanced = sorted(clean.keys() - enhanced.keys()), sorted(enhanced.keys() - clean.keys())
    both = clean.keys() & enhanced.keys()
    no_noisy = sorted(both - noisy.keys()) if noisy is not None else []
    common = sorted(both - set(no_noisy))
    problems = []
    if only_clean:
        problems.append(f"{len(only_clean)} clean file(s) have no enhanced counterpart in {enhanced_dir}: "
                        f"{_show(only_clean)}")
    if only_enhanced:
        problems.append(f"{len(only_enhanced)} enhanced file(s) have no clean reference in {clean_dir}: "
                        f"{_show(only_enhanced)}")
    if no_noisy:
        problems.append(f"{len(no_noisy)} file(s) have no noisy input in {noisy_dir}: {_show(no_noisy)}")
    if not common:
        raise EvaluationError("no file is present in all folders to evaluate. " + "; ".join(problems) +
                              ". Check the folder paths.")
    if problems and not allow_missing:
        raise EvaluationError("the folders do not match: " + "; ".join(problems) + ". Enhance the missing "
                              f"files or fix the paths, or allow missing files (allow_missing / "
                              f"--allow-missing) to evaluate the {len(common)} present in all folders.")
    pairs = [Pair(i, enhanced[i], clean[i], noisy[i] if noisy is not None else None) for i in common]
    return pairs, len(only_clean) + len(only_enhanced) + len(no_noisy)


def check_lengths(pairs: list[Pair], sample_rate: int = SAMPLE_RATE) -> None:
    """Read only the headers and list every pair whose lengths differ by more than 1 % (wrong pairing)."""
    def length(path: Path) -> float | None:
        try:
            info = audio_info(path)
        except AudioError:  # unreadable: its row becomes NaN with the reason (evaluate_pair)
            return None
        return info.frames * sample_rate / info.samplerate

    bad = []
    for pair in pairs:
        n_clean = length(pair.clean)
        for other in (pair.enhanced, pair.noisy):
            if other is not None and n_clean is not None:
                n_other = length(other)
                if n_other is not None and lengths_differ(n_other, n_clean):
                    bad.append(f"{other} ({n_other / sample_rate:.2f} s) vs {pair.clean} "
                               f"({n_clean / sample_rate:.2f} s)")
    if bad:
        raise EvaluationError(f"{len(bad)} file(s) differ in length from their clean reference by more than "
                              f"{LENGTH_TOLERANCE:.0%}: {_show(bad, 3)}. They do not belong together: check "
                              f"that the folders hold the same utterances, uncropped.")


def _normalise_id(file_id: str) -> str:
    file_id = file_id.strip().replace("\\", "/").removeprefix("./")
    stem, dot, ext = file_id.rpartition(".")
    return stem if dot and f".{ext.lower()}" in (".wav", ".flac") else file_id


def load_groups(manifest, ids: list[str], group_by: list[str]) -> pd.DataFrame:
    """The manifest's group columns for `ids` (index: id). A key "a+b" groups by both columns."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise EvaluationError(f"manifest {manifest} not found. Check the path.")
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    columns = sorted({col for key in group_by for col in key.split("+")})
    missing = [c for c in ["id", *columns] if c not in table.columns]
    if missing:
        raise EvaluationError(f"manifest {manifest} has no column(s) {missing}; it has {list(table.columns)}. "
                              f"Fix the group-by names or the manifest.")
    table["id"] = table["id"].map(_normalise_id)
    duplicated = sorted(set(table["id"][table["id"].duplicated()]))
    if duplicated:
        raise EvaluationError(f"manifest {manifest} lists these ids more than once: {_show(duplicated)}. "
                              f"Keep one row per file.")
    table = table.set_index("id")
    absent = [i for i in ids if i not in table.index]
    if absent:
        raise EvaluationError(f"manifest {manifest} has no row for {len(absent)} evaluated file(s): "
                              f"{_show(absent)}. Its `id` column must hold each file's path relative to the "
                              f"clean folder, without extension.")
    return table.loc[ids, columns]


# -------------------------------------------------------------------------------------------- computing

def evaluate_pair(pair: Pair, metrics=DEFAULT_METRICS, sample_rate: int = SAMPLE_RATE) -> dict:
    """Metrics of one enhanced file (and of its noisy input, with the improvement) against the clean file.

    A file that cannot be scored (unreadable, NaN/Inf samples, several channels) gives NaN metrics with the
    reason in `errors`, like silent or too short files: one bad file never stops a test set's evaluation.
    """
    def read(path):
        try:
            return read_audio(path, sample_rate, resample=True, min_samples=0), ""
        except AudioError as err:
            return None, str(err)

    def score(path, clean, clean_error):
        wav, error = read(path)
        if wav is None or clean is None:
            return {**{m: math.nan for m in metrics}, "errors": error or clean_error}
        return compute_metrics(wav, clean, sample_rate, metrics, names=(path, pair.clean))

    clean, clean_error = read(pair.clean)
    row = {"id": pair.id}
    scores = score(pair.enhanced, clean, clean_error)
    errors = [scores.pop("errors")]
    row.update(scores)
    if pair.noisy is not None:
        noisy = score(pair.noisy, clean, clean_error)
        noisy_errors = noisy.pop("errors")
        errors += [f"noisy {e}" for e in noisy_errors.split("; ") if e]
        for name in metrics:
            row[f"noisy_{name}"] = noisy[name]
            row[f"delta_{name}"] = row[name] - noisy[name]
    row["errors"] = "; ".join(e for e in errors if e)
    return row


def init_worker() -> None:
    torch.set_num_threads(1)  # the pool already uses every core; no oversubscription inside a worker


def _result_columns(metrics, with_noisy: bool) -> list[str]:
    columns = list(metrics)
    if with_noisy:
        columns += [f"noisy_{m}" for m in metrics] + [f"delta_{m}" for m in metrics]
    return columns + ["errors"]


def _load_cache(path: Path, columns: list[str]) -> dict[str, dict]:
    """Rows of an earlier (possibly interrupted) run that hold every column needed now, by id."""
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path, dtype={"id": str, "key": str, "errors": str},
                            float_precision="round_trip")  # reused rows give the very same means
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        warnings.warn(f"{path}: unreadable ({err}); recomputing every file.")
        return {}
    if not {"id", "key", *columns} <= set(table.columns):
        return {}
    table["errors"] = table["errors"].fillna("")
    return {row["id"]: row for row in table[["id", "key", *columns]].to_dict("records")}


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """A matplotlib Figure as PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


def write_csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def compute_rows(pairs: list[Pair], metrics, sample_rate: int, cache: dict[str, dict], num_workers: int,
                 save, quiet: bool = False) -> list[dict]:
    """Rows for all pairs: reused from `cache` when their key matches, else computed (in a pool when
    num_workers > 1). `save(rows)` is called every few rows and on exit, even when interrupted."""
    rows, todo = [], []
    for pair in pairs:
        key = pair.cache_key(sample_rate)
        cached = cache.get(pair.id)
        if cached is not None and cached["key"] == key:
            rows.append(cached)
        else:
            todo.append((pair, key))
    if rows and not quiet:
        print(f"reusing {len(rows)} row(s) from an earlier run; computing {len(todo)}")
    progress = tqdm(total=len(todo), desc="evaluating", unit="file", disable=quiet or not todo)

    def add(row, key):
        rows.append({**row, "key": key})
        progress.update()
        if progress.n % CHECKPOINT_EVERY == 0:
            save(rows)

    try:
        if num_workers > 1 and len(todo) > 1:
            with ProcessPoolExecutor(num_workers, mp_context=get_context("spawn"), initializer=init_worker) as pool:
                futures = {pool.submit(evaluate_pair, pair, metrics, sample_rate): key for pair, key in todo}
                try:
                    for future in as_completed(futures):
                        add(future.result(), futures[future])
                except BaseException:
                    pool.shutdown(cancel_futures=True)
                    raise
        else:
            for pair, key in todo:
                add(evaluate_pair(pair, metrics, sample_rate), key)
    finally:
        progress.close()
        save(rows)
    return rows


# ---------------------------------------------------------------------------------------------- summary

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


def label_order(label: str):
    parts = []
    for part in label.split("/"):  # numbers in numeric order (0, 5, 10 dB), then text
        try:
            parts.append((0, float(part), ""))
        except ValueError:
            parts.append((1, 0.0, part))
    return parts


def _group_labels(table: pd.DataFrame, key: str) -> pd.Series:
    return table[key.split("+")].astype(str).agg("/".join, axis=1)


def summarise(table: pd.DataFrame, metrics, group_by=()) -> dict:
    """{"n_files", "enhanced"/"noisy"/"improvement": {metric: {mean, std, n}}, "groups": {key: {label: ...}}}."""
    summary = _summarise(table, metrics)
    summary["groups"] = {}
    for key in group_by:
        labels = _group_labels(table, key)
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


def markdown_table(summary: dict, metrics) -> str:
    header = ["Group", "Signal", "N"] + [METRIC_INFO[m][0] for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, label, block in _blocks(summary):
        group = "all" if key == "all" else f"{key}={label}"
        for signal in SIGNALS:
            if signal in block:
                cells = [_cell(block[signal][m], METRIC_INFO[m][1], block["n_files"]) for m in metrics]
                lines.append("| " + " | ".join([group, signal, str(block["n_files"]), *cells]) + " |")
    return "\n".join(lines)


def summary_rows(summary: dict, metrics) -> pd.DataFrame:
    """The summary in long form: group_by, group, signal, metric, mean, std, n."""
    rows = [{"group_by": key, "group": label, "signal": signal, "metric": m, **block[signal][m]}
            for key, label, block in _blocks(summary) for signal in SIGNALS if signal in block for m in metrics]
    return pd.DataFrame(rows)


def json_safe(value):
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    if isinstance(value, np.integer):
        return int(value)
    return value


def plot_metrics(table: pd.DataFrame, metrics, out_dir: Path, group_key: str | None = None) -> list[Path]:
    """One box plot per metric: noisy and enhanced side by side, per group of `group_key` (or overall)."""
    from matplotlib.figure import Figure  # no pyplot: never touches the user's global backend
    from matplotlib.patches import Patch

    labels = _group_labels(table, group_key) if group_key else pd.Series("all", index=table.index)
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
        ax.set_ylabel(METRIC_INFO[m][0])
        ax.legend(handles=[Patch(color=colours[s], label=s) for s, _ in signals], loc="best")
        path = out_dir / f"plot_{m}.png"
        save_figure(fig, path)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------ entry point

def default_out_dir(enhanced_dir) -> Path:
    """`<enhanced>_eval` beside the enhanced folder (never inside it)."""
    enhanced_dir = Path(enhanced_dir).resolve()
    return enhanced_dir.parent / f"{enhanced_dir.name}_eval"


def _check_out_dir(out_dir: Path, inputs: dict[str, Path]) -> None:
    for role, folder in inputs.items():
        if out_dir.resolve().is_relative_to(folder.resolve()):
            raise EvaluationError(f"output folder {out_dir} lies inside the {role} folder {folder}; inputs are "
                                  f"never written to. Choose another output folder.")


def evaluate_folders(enhanced_dir, clean_dir, noisy_dir=None, out_dir=None, manifest=None, group_by=None,
                     num_workers: int = 1, metrics=DEFAULT_METRICS, sample_rate: int = SAMPLE_RATE,
                     allow_missing: bool = False, plot: bool = True, quiet: bool = False) -> dict:
    """Evaluate every enhanced file against its clean reference (and the noisy input, when given).

    manifest: CSV with an `id` column (path relative to the clean folder, without extension) and the
        columns named in `group_by` (e.g. ["snr", "noise_type"]; "snr+noise_type" groups by both).
    Writes per_file.csv, summary.{md,json,csv} and plot_<metric>.png into out_dir (default
    `<enhanced>_eval` beside the enhanced folder), prints the Markdown table, returns the summary dict.
    """
    enhanced_dir, clean_dir = Path(enhanced_dir), Path(clean_dir)
    noisy_dir = Path(noisy_dir) if noisy_dir is not None else None
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(enhanced_dir)
    metrics, group_by = tuple(metrics), list(group_by or [])
    unknown = [m for m in metrics if m not in METRIC_INFO]
    if not metrics or unknown:
        raise EvaluationError(f"unknown metric(s) {unknown or metrics}; choose from {list(METRIC_INFO)}.")
    if group_by and manifest is None:
        raise EvaluationError(f"grouping by {group_by} needs a manifest CSV holding those columns.")
    inputs = {"enhanced": enhanced_dir, "clean": clean_dir, **({"noisy": noisy_dir} if noisy_dir else {})}

    pairs, n_skipped = pair_files(enhanced_dir, clean_dir, noisy_dir, allow_missing)
    _check_out_dir(out_dir, inputs)
    remove_leftovers(out_dir, recursive=False)  # half-written tables of an interrupted run
    ids = [p.id for p in pairs]
    groups = load_groups(manifest, ids, group_by) if manifest is not None else None
    check_lengths(pairs, sample_rate)
    if n_skipped and not quiet:
        print(f"skipping {n_skipped} file(s) missing from one of the folders; evaluating {len(pairs)}")

    columns = _result_columns(metrics, noisy_dir is not None)
    per_file = out_dir / PER_FILE_CSV

    def table_of(rows: list[dict]) -> pd.DataFrame:
        table = pd.DataFrame(rows, columns=["id", *columns, "key"]).sort_values("id", ignore_index=True)
        if groups is not None:  # group columns right after the id, from this run's manifest
            table = pd.concat([table[["id"]], groups.loc[table["id"]].reset_index(drop=True),
                               table.drop(columns="id")], axis=1)
        return table

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = compute_rows(pairs, metrics, sample_rate, _load_cache(per_file, columns), num_workers,
                        save=lambda rows: write_csv(table_of(rows), per_file), quiet=quiet)
    table = table_of(rows)

    summary = summarise(table, metrics, group_by)
    summary["n_skipped"] = n_skipped
    scored = [c for c in columns if c != "errors" and not c.startswith("delta_")]
    summary["missing_values"] = {c: int(table[c].isna().sum()) for c in scored if table[c].isna().any()}
    summary["settings"] = {"enhanced_dir": str(enhanced_dir), "clean_dir": str(clean_dir),
                           "noisy_dir": str(noisy_dir) if noisy_dir else None,
                           "manifest": str(manifest) if manifest else None, "group_by": group_by,
                           "metrics": list(metrics), "sample_rate": sample_rate}

    markdown = markdown_table(summary, metrics)
    notes = [f"{len(pairs)} file(s) evaluated" + (f", {n_skipped} skipped (missing from a folder)" if n_skipped
                                                  else "") + "; mean ± std (population std)."]
    if summary["missing_values"]:
        missing = ", ".join(f"{c}: {n}" for c, n in summary["missing_values"].items())
        notes.append(f"Values that could not be computed (NaN, left out of the means): {missing}; "
                     f"see the `errors` column of {PER_FILE_CSV}.")
    text = f"# Evaluation of {enhanced_dir}\n\n{markdown}\n\n" + "\n".join(notes) + "\n"
    write_text_atomic(out_dir / "summary.md", text)
    write_text_atomic(out_dir / "summary.json", json.dumps(json_safe(summary), indent=2) + "\n")
    write_csv(summary_rows(summary, metrics), out_dir / "summary.csv")
    if plot:
        plot_metrics(table, metrics, out_dir, group_by[0] if group_by else None)
    if not quiet:
        print(text)
        print(f"results in {out_dir}")
    return summary
