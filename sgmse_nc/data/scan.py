"""Training-data scan at setup: every file's header is checked once, before training starts, and every problem
is reported in one message naming the files and the fix (a corrupt wav otherwise surfaces only when its batch
is drawn, hours in).

Headers are read in a thread pool (sgmse_nc.checks) and cached in each data folder (`.sgmse_nc_scan.json`,
keyed by the files' sizes and modification times), so a rerun re-reads only what changed. A read-only data
folder simply goes without the cache.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from sgmse_nc.checks import Header, Problem, Requirements, check_audio_files, problems_message
from sgmse_nc.io import write_text_atomic
from sgmse_nc.errors import UserError

log = logging.getLogger(__name__)

CACHE_FILE = ".sgmse_nc_scan.json"
CACHE_VERSION = 1


def prepare_fix(rate: int, target: str = "the data config's root") -> str:
    """How to get a corpus at `rate`: the prepare command that makes the copy, and where to point the config."""
    return (f"Make a {rate} Hz copy with `python -m sgmse_nc.data.prepare vbdmd --src <the official download> "
            f"--dst <new folder> --sample-rate {rate}` (it resamples and checks every file) and point {target} "
            f"at it, or choose the spec (spec=16k/24k/48k) of the files' rate")


def scan_datamodule(datamodule) -> None:
    """Check the files of the datamodule's train / valid / test sets; UserError listing every problem."""
    problems, total = [], 0
    for name in ("train_set", "valid_set", "test_set"):
        dataset = getattr(datamodule, name, None)
        if dataset is not None and hasattr(dataset, "pairs"):  # folder datasets (noise pools check their own)
            found, count = scan_paired(dataset)
            problems += found
            total += count
    if problems:
        raise UserError(problems_message(problems, total, "training was not started"))


def scan_paired(dataset) -> tuple[list[Problem], int]:
    """Problems of a PairedFolderDataset's clean/noisy pairs (and its reference files), and the file count."""
    req = Requirements(sample_rate=dataset.sample_rate, rate_fix=prepare_fix(dataset.sample_rate),
                       channels_fix="Convert to mono (`sox in.wav -c 1 out.wav`), or re-prepare the corpus with "
                                    "`python -m sgmse_nc.data.prepare`",
                       min_samples=dataset.spec.n_fft, short_fix="Remove the pair(s) from both folders")
    refs = [p for p in getattr(dataset.ref_strategy, "paths", []) if p is not None]
    paths = [p for pair in dataset.pairs for p in pair] + refs
    headers, problems = cached_check(Path(dataset.root), paths, req)
    bad = {p.path for p in problems}
    for clean, noisy in dataset.pairs:
        if clean in headers and noisy in headers and headers[clean].frames != headers[noisy].frames:
            if noisy not in bad:
                problems.append(Problem(noisy, f"{headers[noisy].frames} samples but its clean file has "
                                               f"{headers[clean].frames}", "Clean and noisy files of a pair must "
                                               "have the same length: re-prepare the corpus"))
    return problems, len(paths)


def cached_check(root: Path, paths: list[Path], req: Requirements) -> tuple[dict[Path, Header], list[Problem]]:
    """check_audio_files with a per-folder cache of the results, keyed by each file's size and mtime."""
    cache_path = root / CACHE_FILE
    key = repr(req)
    cached = _load(cache_path, key)
    stats = {p: _stat(p) for p in paths}
    todo = [p for p in paths if stats[p] is None or cached.get(_rel(root, p), {}).get("stat") != stats[p]]
    headers, problems = check_audio_files(todo, req) if todo else ({}, [])
    fresh = {p.path: p for p in problems}
    entries, all_problems = {}, []
    for p in paths:
        rel = _rel(root, p)
        if p in headers or p in fresh:
            entry = {"stat": stats[p]}
            if p in headers:
                entry.update(frames=headers[p].frames, rate=headers[p].sample_rate, channels=headers[p].channels)
            else:
                entry.update(what=fresh[p].what, fix=fresh[p].fix)
        else:
            entry = cached[rel]
        entries[rel] = entry
        if "what" in entry:
            all_problems.append(Problem(p, entry["what"], entry["fix"]))
        else:
            headers[p] = Header(p, entry["frames"], entry["rate"], entry["channels"])
    if todo:
        log.info("scanned %d of %d data file header(s) in %s (the others were cached)", len(todo), len(paths), root)
        _save(cache_path, key, {r: e for r, e in entries.items() if e["stat"] is not None})
    return headers, all_problems


def _rel(root: Path, path: Path) -> str:
    return os.path.relpath(path, root)


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _load(path: Path, key: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("version") != CACHE_VERSION or data.get("requirements") != key:
        return {}
    return data.get("files", {})


def _save(path: Path, key: str, files: dict) -> None:
    try:
        write_text_atomic(path, json.dumps({"version": CACHE_VERSION, "requirements": key, "files": files}))
    except OSError as err:  # a read-only corpus: scan again next time
        log.debug("scan cache not written (%s)", err)
