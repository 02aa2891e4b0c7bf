"""Folder evaluation: enhanced vs clean (and the noisy input beside it) -> per-file CSV, summary tables, plots.

Files are paired by their path relative to each folder, without the extension (the same `id` the
datasets use). Outputs go to `out_dir` only (never into an input folder), each written atomically:

    per_file.csv   id, group columns, metrics, noisy_<metric>, delta_<metric>, errors, key
    summary.md     mean ± std table (overall and per group)   summary.json / summary.csv: the same numbers
    plot_<metric>.png

The per-file CSV is saved every few files, so an interrupted run resumes: a row is reused while the
three files it was computed from keep their path, size and modification time (its `key`, sgmse_nc.eval.rows).
The tables are sgmse_nc.eval.tables, the box plots sgmse_nc.eval.plots.
"""
from __future__ import annotations

import json
import math
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from sgmse_nc.audio import SAMPLE_RATE, AudioError, audio_info, list_audio, read_audio
from sgmse_nc.errors import UserError, short_list
from sgmse_nc.eval.metrics import (DEFAULT_METRICS, INTRUSIVE_METRICS, LENGTH_TOLERANCE, METRICS, compute_metrics,
                                   lengths_differ, metric_rate)
from sgmse_nc.eval.plots import plot_metrics
from sgmse_nc.eval.rows import cached_rows, file_key
from sgmse_nc.eval.tables import json_safe, summarise, summary_markdown, summary_rows
from sgmse_nc.io import input_holding, remove_leftovers, write_csv, write_text_atomic

PER_FILE_CSV = "per_file.csv"
CHECKPOINT_EVERY = 25  # rows computed between saves of the per-file CSV


class EvaluationError(UserError, ValueError):
    """A user-facing problem with the evaluation's folders, options or manifest; the message names the fix."""


@dataclass(frozen=True)
class Pair:
    id: str
    enhanced: Path
    clean: Path
    noisy: Path | None = None

    def cache_key(self, sample_rate: int) -> str:
        """Changes when any of the files is replaced or touched, or when the folders change."""
        return file_key((self.enhanced, self.clean, self.noisy), sample_rate)


# ---------------------------------------------------------------------------------------------- pairing

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
                        f"{short_list(only_clean)}")
    if only_enhanced:
        problems.append(f"{len(only_enhanced)} enhanced file(s) have no clean reference in {clean_dir}: "
                        f"{short_list(only_enhanced)}")
    if no_noisy:
        problems.append(f"{len(no_noisy)} file(s) have no noisy input in {noisy_dir}: {short_list(no_noisy)}")
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
                              f"{LENGTH_TOLERANCE:.0%}: {short_list(bad, 3)}. They do not belong together: check "
                              f"that the folders hold the same utterances, uncropped.")


def check_metric_rates(metrics, sample_rate: int) -> None:
    """PESQ only upsamples: wide-band PESQ of files scored below 16 kHz is refused before any work."""
    for metric in metrics:
        rate = METRICS[metric].rate if metric in ("pesq", "pesq_nb") else None
        if rate is not None and sample_rate < rate:
            raise EvaluationError(f"{metric} needs audio at {rate} Hz or more, and the files are scored at "
                                  f"{sample_rate} Hz (--sample-rate, else the clean files' rate). Use --pesq-mode nb "
                                  f"(narrow-band PESQ, 8 kHz) or --sample-rate {rate}.")


def files_rate(pairs: list[Pair]) -> int:
    """The rate of the clean files, where the metrics are computed unless the caller names one (one rate for
    a test set: PESQ then resamples to 16 kHz, ESTOI to pystoi's 10 kHz, SI-SDR stays at this rate)."""
    rates: dict[int, str] = {}
    for pair in pairs:
        try:
            rates.setdefault(int(audio_info(pair.clean).samplerate), str(pair.clean))
        except AudioError:  # unreadable: its row becomes NaN with the reason (evaluate_pair)
            continue
    if len(rates) > 1:
        listing = ", ".join(f"{rate} Hz (e.g. {path})" for rate, path in sorted(rates.items()))
        raise EvaluationError(f"the clean files come at several rates: {listing}. Pass --sample-rate <Hz> to score "
                              f"every file at one rate, or evaluate the rates separately.")
    return next(iter(rates), SAMPLE_RATE)


def scored_rate(out_dir) -> int | None:
    """The rate an evaluation folder's files were scored at (its summary.json), for tables made from its per-file
    rows (sgmse_nc.eval.comparison); None when the folder holds no summary."""
    try:
        return json.loads((Path(out_dir) / "summary.json").read_text())["settings"]["sample_rate"]
    except (OSError, ValueError, KeyError):
        return None


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
        raise EvaluationError(f"manifest {manifest} lists these ids more than once: {short_list(duplicated)}. "
                              f"Keep one row per file.")
    table = table.set_index("id")
    absent = [i for i in ids if i not in table.index]
    if absent:
        raise EvaluationError(f"manifest {manifest} has no row for {len(absent)} evaluated file(s): "
                              f"{short_list(absent)}. Its `id` column must hold each file's path relative to the "
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


# ------------------------------------------------------------------------------------------ entry point

def default_out_dir(enhanced_dir) -> Path:
    """`<enhanced>_eval` beside the enhanced folder (never inside it)."""
    enhanced_dir = Path(enhanced_dir).resolve()
    return enhanced_dir.parent / f"{enhanced_dir.name}_eval"


def _check_out_dir(out_dir: Path, inputs: dict[str, Path]) -> None:
    holding = input_holding(out_dir, inputs)
    if holding is not None:
        raise EvaluationError(f"output folder {out_dir} lies inside the {holding[0]} folder {holding[1]}; inputs "
                              f"are never written to. Choose another output folder.")


def evaluate_folders(enhanced_dir, clean_dir, noisy_dir=None, out_dir=None, manifest=None, group_by=None,
                     num_workers: int = 1, metrics=DEFAULT_METRICS, sample_rate: int | None = None,
                     allow_missing: bool = False, plot: bool = True, quiet: bool = False) -> dict:
    """Evaluate every enhanced file against its clean reference (and the noisy input, when given).

    manifest: CSV with an `id` column (path relative to the clean folder, without extension) and the
        columns named in `group_by` (e.g. ["snr", "noise_type"]; "snr+noise_type" groups by both).
    sample_rate: the rate the files are read at (None: the clean files' own; enhanced files at another rate
        are resampled to it). PESQ is computed at 16 kHz, ESTOI at pystoi's 10 kHz, SI-SDR at this rate.
    Writes per_file.csv, summary.{md,json,csv} and plot_<metric>.png into out_dir (default
    `<enhanced>_eval` beside the enhanced folder), prints the Markdown table, returns the summary dict.
    """
    enhanced_dir, clean_dir = Path(enhanced_dir), Path(clean_dir)
    noisy_dir = Path(noisy_dir) if noisy_dir is not None else None
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(enhanced_dir)
    metrics, group_by = tuple(metrics), list(group_by or [])
    unknown = [m for m in metrics if m not in INTRUSIVE_METRICS]
    if not metrics or unknown:
        raise EvaluationError(f"unknown metric(s) {unknown or metrics}; choose from {list(INTRUSIVE_METRICS)}.")
    if group_by and manifest is None:
        raise EvaluationError(f"grouping by {group_by} needs a manifest CSV holding those columns.")
    inputs = {"enhanced": enhanced_dir, "clean": clean_dir, **({"noisy": noisy_dir} if noisy_dir else {})}

    pairs, n_skipped = pair_files(enhanced_dir, clean_dir, noisy_dir, allow_missing)
    _check_out_dir(out_dir, inputs)
    remove_leftovers(out_dir, recursive=False)  # half-written tables of an interrupted run
    ids = [p.id for p in pairs]
    groups = load_groups(manifest, ids, group_by) if manifest is not None else None
    sample_rate = sample_rate or files_rate(pairs)
    check_metric_rates(metrics, sample_rate)
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
    rows = compute_rows(pairs, metrics, sample_rate, cached_rows(per_file, columns), num_workers,
                        save=lambda rows: write_csv(table_of(rows), per_file), quiet=quiet)
    table = table_of(rows)

    summary = summarise(table, metrics, group_by)
    summary["n_skipped"] = n_skipped
    scored = [c for c in columns if c != "errors" and not c.startswith("delta_")]
    summary["missing_values"] = {c: int(table[c].isna().sum()) for c in scored if table[c].isna().any()}
    summary["settings"] = {"enhanced_dir": str(enhanced_dir), "clean_dir": str(clean_dir),
                           "noisy_dir": str(noisy_dir) if noisy_dir else None,
                           "manifest": str(manifest) if manifest else None, "group_by": group_by,
                           "metrics": list(metrics), "sample_rate": sample_rate,
                           "metric_rates": {m: metric_rate(m, sample_rate) for m in metrics}}

    markdown = summary_markdown(summary, metrics)
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
