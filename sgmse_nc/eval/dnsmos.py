"""DNSMOS P.835 (SIG / BAK / OVRL), non-intrusive: no clean reference needed, so it also scores real recordings.

Runs offline: the optional extra `pip install -e ".[dnsmos]"` installs `speechmos`, which ships the
DNS-Challenge ONNX models inside the package (onnxruntime); nothing is downloaded. About 3 s per clip on one
CPU core (each clip is scored in 9 s windows; shorter clips are repeated to 9 s, as DNSMOS does).

    dnsmos_folder(folder, cache_csv) -> per-file table: id, dnsmos_sig, dnsmos_bak, dnsmos_ovrl
    evaluate_dnsmos(enhanced_dir, noisy_dir, out_dir)   dnsmos.{md,csv,json}: noisy first, enhanced beside
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sgmse_nc.audio import read_audio
from sgmse_nc.errors import UserError
from sgmse_nc.eval.folder import index_folder
from sgmse_nc.eval.metrics import DNSMOS_METRICS, metric_rate
from sgmse_nc.eval.rows import cached_rows, file_key
from sgmse_nc.io import write_csv

MISSING_EXTRA = ("DNSMOS needs the optional extra: pip install -e \".[dnsmos]\" (speechmos with its ONNX models, "
                 "onnxruntime).")


DNSMOS_RATE = metric_rate(DNSMOS_METRICS[0], None)  # the registry's: P.835's models score 16 kHz audio


class DnsmosUnavailable(UserError, ImportError):
    """The optional `dnsmos` extra is not installed; the message says how to install it."""


def dnsmos_model():
    try:
        from speechmos import dnsmos
    except ImportError as err:
        raise DnsmosUnavailable(f"{MISSING_EXTRA} ({err})") from err
    return dnsmos


def available() -> bool:
    try:
        dnsmos_model()
        return True
    except DnsmosUnavailable:
        return False


def dnsmos_scores(wav, sample_rate: int = DNSMOS_RATE) -> dict:
    """SIG / BAK / OVRL of one mono waveform (numpy or torch) at DNSMOS_RATE."""
    wav = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)  # the model takes [-1, 1] float audio
    result = dnsmos_model().run(wav, sr=sample_rate)
    return {"dnsmos_sig": float(result["sig_mos"]), "dnsmos_bak": float(result["bak_mos"]),
            "dnsmos_ovrl": float(result["ovrl_mos"])}


def dnsmos_folder(folder, cache_csv, quiet: bool = False) -> pd.DataFrame:
    """DNSMOS of every file under `folder` (id = relative path without extension), reusing the rows of
    `cache_csv` whose file is unchanged and saving it again (atomically)."""
    dnsmos_model()  # fail before any work when the extra is missing
    files = index_folder(Path(folder), "audio")
    cached = cached_rows(cache_csv, list(DNSMOS_METRICS))
    keys = {i: file_key([p]) for i, p in files.items()}
    todo = [(i, p) for i, p in sorted(files.items()) if cached.get(i, {}).get("key") != keys[i]]
    rows = [cached[i] for i in sorted(files) if i not in dict(todo)]
    for file_id, path in tqdm(todo, desc="DNSMOS", unit="file", disable=quiet or not todo):
        rows.append({"id": file_id, **dnsmos_scores(read_audio(path, DNSMOS_RATE, resample=True, min_samples=0)),
                     "key": keys[file_id]})
    table = pd.DataFrame(rows, columns=["id", *DNSMOS_METRICS, "key"]).sort_values("id", ignore_index=True)
    write_csv(table, cache_csv)
    return table
