"""Per-file rows on disk (per_file.csv, dnsmos.csv): read back exactly, and reused on a rerun while the files
they were computed from are unchanged.

Each row carries a `key` made from its files' path, size and modification time (`file_key`), so a rerun
recomputes only the rows whose files were replaced or touched; floats are read back with round-trip
precision, so reused rows give the very same means.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pandas as pd


def file_key(paths, *extra) -> str:
    """Changes when any of `paths` (None entries skipped) is replaced or touched, or when `extra` changes."""
    parts = [str(e) for e in extra]
    for path in paths:
        if path is not None:
            stat = path.stat()
            parts.append(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def read_per_file(path) -> pd.DataFrame:
    """A per-file CSV with exact floats (the means match summary.json); ids and errors stay strings."""
    return pd.read_csv(path, dtype={"id": str, "key": str, "errors": str}, float_precision="round_trip")


def cached_rows(path: Path, columns: list[str]) -> dict[str, dict]:
    """Rows of an earlier (possibly interrupted) run that hold `key` and every column needed now, by id;
    an unreadable file is reported and ignored (every file is recomputed)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        table = read_per_file(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        warnings.warn(f"{path}: unreadable ({err}); recomputing every file.")
        return {}
    if not {"id", "key", *columns} <= set(table.columns):
        return {}
    if "errors" in table.columns:
        table["errors"] = table["errors"].fillna("")
    return {row["id"]: row for row in table[["id", "key", *columns]].to_dict("records")}
