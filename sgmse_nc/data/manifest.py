"""Manifest CSV files: one row per utterance of a prepared subset.

`<root>/<subset>/manifest.csv` holds at least `id` (the file name without `.wav`), and for
VoiceBank-DEMAND `speaker`, `noise_type` and `snr` (dB); builders may add any further columns.
Values are kept as strings except the numeric columns in `NUMERIC_COLUMNS`, which are parsed
(a bad value is an error naming the file, the line and the column).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from sgmse_nc.errors import UserError
from sgmse_nc.io import write_text_if_changed

NUMERIC_COLUMNS = frozenset({"snr"})
# Columns that name the class of the noise a file was mixed with, coarsest first (ESC-50's `category`, the
# VoiceBank-DEMAND / demo `noise_type`): the first one a manifest has is its noise label.
NOISE_CLASS_COLUMNS = ("category", "noise_category", "noise_class", "noise_type")


class ManifestError(UserError, ValueError):
    """A missing or malformed manifest; the message names the file and the fix."""


def speech_id(name: str) -> str:
    """The id of a file from its path relative to its folder: no suffix, sub-folders joined with '_'."""
    return Path(name).with_suffix("").as_posix().replace("/", "_")


def manifest_text(rows: list[dict], columns: tuple[str, ...] = ("id",)) -> str:
    """CSV text of `rows`: `columns` first, then any other keys in order of first appearance."""
    header = list(columns)
    for row in rows:
        header += [key for key in row if key not in header]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n", restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _format(value) for key, value in row.items()})
    return out.getvalue()


def write_manifest(path, rows: list[dict], columns: tuple[str, ...] = ("id",)) -> bool:
    """Write atomically; skip the write when the file already holds the same text. Returns True if written."""
    return write_text_if_changed(path, manifest_text(rows, columns))


def read_manifest(path, required: tuple[str, ...] = ("id",)) -> list[dict]:
    """Rows of a manifest as dicts; missing file/columns, duplicate ids and bad numbers are errors."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found. Prepare the data first (e.g. "
                            f"`python -m sgmse_nc.data.prepare vbdmd --src <download> --dst <root>`) "
                            f"or point `manifest` in the data config at the right file.")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [col for col in required if col not in header]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {', '.join(missing)} "
                                f"(found: {', '.join(header) or 'none'}). "
                                f"The manifest needs the columns {', '.join(required)}.")
        rows, seen = [], set()
        for line, row in enumerate(reader, start=2):
            if None in row or any(value is None for value in row.values()):
                raise ManifestError(f"{path}, line {line}: {len(header)} fields expected. Fix or rewrite the file.")
            if row["id"] in seen:
                raise ManifestError(f"{path}, line {line}: id {row['id']!r} appears twice. Ids must be unique.")
            seen.add(row["id"])
            for col in NUMERIC_COLUMNS & row.keys():
                try:
                    row[col] = float(row[col])
                except ValueError:
                    raise ManifestError(f"{path}, line {line}: column {col!r} is {row[col]!r}, "
                                        f"a number is expected.") from None
            rows.append(row)
    return rows


def manifest_columns(path) -> list[str]:
    """The header of a manifest ([] when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def noise_class_column(columns, wanted: str | None = None) -> str | None:
    """The column holding the noise class: `wanted` when given (None if absent), else the first of
    NOISE_CLASS_COLUMNS present."""
    if wanted:
        return wanted if wanted in columns else None
    return next((c for c in NOISE_CLASS_COLUMNS if c in columns), None)


def noise_class_labels(path, wanted: str | None = None) -> dict[str, str]:
    """{id: noise class} from a manifest; {} when the file or its class column is absent. Empty cells are
    unknown and left out."""
    column = noise_class_column(manifest_columns(path), wanted)
    if column is None:
        return {}
    return {row["id"]: row[column] for row in read_manifest(path, required=("id", column)) if row[column]}


def _format(value) -> str:
    # short floats: the logs' 1.750000e+01 is written as 17.5
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e6 else repr(value)
    return str(value)
