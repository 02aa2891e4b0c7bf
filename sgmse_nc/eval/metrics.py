"""Speech-enhancement metrics: PESQ (wide/narrow band), ESTOI and SI-SDR, and the one registry of every metric
the tables show (`METRICS`: label, decimals, whether it needs the clean reference, and the rate it is computed
at; DNSMOS, which needs no reference, is computed by sgmse_nc.eval.dnsmos at its registry rate).

Rates: the signals come at the files' rate `sr`; PESQ resamples them to 16 kHz (wide band, P.862.2) or 8 kHz
(narrow band), ESTOI is pystoi's (it resamples to 10 kHz itself), SI-SDR is computed at `sr`, so a 48 kHz file's
SI-SDR sees the whole band, and DNSMOS P.835 scores 16 kHz audio. The code that computes a metric reads its
rate from the registry (`metric_rate`), and every table header names it (`metric_header`, e.g.
"PESQ (16 kHz WB)", "SI-SDR [dB] (48 kHz)"): the header says what was computed.

`compute_metrics` never raises on bad audio (silence, too short, PESQ finding no utterance): the
metric becomes NaN and the reason is kept in the result's "errors" entry, so one bad file cannot
stop the evaluation of a whole test set. Only a caller error (lengths that clearly do not belong
together, an unknown metric) raises.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pesq as pesq_lib
import torch
from pystoi import stoi

from sgmse_nc.audio import SAMPLE_RATE, AudioError, resample_audio


@dataclass(frozen=True)
class Metric:
    label: str  # in tables and plots
    decimals: int  # in tables
    intrusive: bool = True  # scored against the clean reference (compute_metrics); else sgmse_nc.eval.dnsmos
    rate: int | None = None  # Hz the metric is computed at; None: the files' own rate
    rate_note: str = ""  # what the header adds after the rate (the band, the library that fixes it)


# "pesq" is wide-band (P.862.2), as in the SGMSE+ papers.
METRICS = {
    "pesq": Metric("PESQ", 2, rate=16000, rate_note=" WB"),
    "pesq_nb": Metric("PESQ-NB", 2, rate=8000, rate_note=" NB"),
    "estoi": Metric("ESTOI", 2, rate=10000, rate_note=", pystoi"),  # pystoi.stoi.FS: pystoi resamples to it
    "si_sdr": Metric("SI-SDR [dB]", 1),
    "dnsmos_sig": Metric("DNSMOS SIG", 2, intrusive=False, rate=16000),  # the P.835 models take 16 kHz audio
    "dnsmos_bak": Metric("DNSMOS BAK", 2, intrusive=False, rate=16000),
    "dnsmos_ovrl": Metric("DNSMOS OVRL", 2, intrusive=False, rate=16000),
}
INTRUSIVE_METRICS = tuple(name for name, m in METRICS.items() if m.intrusive)
DNSMOS_METRICS = tuple(name for name, m in METRICS.items() if not m.intrusive)
DEFAULT_METRICS = ("pesq", "estoi", "si_sdr")
LENGTH_TOLERANCE = 0.01  # relative length difference that is trimmed silently; more is an error


def metric_rate(name: str, sample_rate: int | None) -> int | None:
    """The rate metric `name` is computed at for signals at `sample_rate` (None when it follows an unknown rate)."""
    return METRICS[name].rate or sample_rate


def metric_header(name: str, sample_rate: int | None = None) -> str:
    """A metric's table header with the rate it was computed at, e.g. "PESQ (16 kHz WB)", "ESTOI (10 kHz, pystoi)",
    "SI-SDR [dB] (48 kHz)"; a metric at the files' rate when that is unknown says so."""
    metric, rate = METRICS[name], metric_rate(name, sample_rate)
    where = f"{rate / 1000:g} kHz" if rate else "files' rate"
    return f"{metric.label} ({where}{metric.rate_note})"


def lengths_differ(a: float, b: float) -> bool:
    """True when two lengths (samples) differ by more than LENGTH_TOLERANCE (and more than one sample)."""
    return abs(a - b) > max(1.0, LENGTH_TOLERANCE * max(a, b))


SILENCE_PEAK = 1e-6  # a signal whose peak is below this carries nothing to score


class MetricFailed(Exception):
    """One metric cannot be computed for this pair; the message says why (it becomes NaN)."""


def si_sdr(estimate, reference, eps: float = 1e-10):
    """Scale-invariant SDR in dB (zero-mean), over the last axis of numpy arrays or torch tensors [..., T].

    Returns the same kind as the input (numpy in float64, torch in the input dtype, differentiable).
    """
    as_numpy = not isinstance(estimate, torch.Tensor)
    est = torch.as_tensor(np.asarray(estimate, dtype=np.float64)) if as_numpy else estimate
    ref = torch.as_tensor(np.asarray(reference, dtype=np.float64)) if as_numpy else reference.to(est)
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    residual = est - target
    value = 10 * torch.log10((target.pow(2).sum(-1) + eps) / (residual.pow(2).sum(-1) + eps))
    return value.numpy() if as_numpy else value


def pesq_score(estimate: np.ndarray, reference: np.ndarray, sr: int, mode: str = "wb") -> float:
    """PESQ at 16 kHz (wb) or 8 kHz (nb), resampling from `sr`; MetricFailed when PESQ cannot score it."""
    target_sr = metric_rate("pesq" if mode == "wb" else "pesq_nb", sr)
    if sr < target_sr:
        raise ValueError(f"PESQ {mode} needs audio at {target_sr} Hz or more, got {sr} Hz "
                         f"(use pesq_nb for 8 kHz audio).")
    if sr != target_sr:
        estimate = resample_audio(torch.from_numpy(estimate), sr, target_sr).numpy()
        reference = resample_audio(torch.from_numpy(reference), sr, target_sr).numpy()
    try:
        return float(pesq_lib.pesq(target_sr, reference, estimate, mode))
    except pesq_lib.BufferTooShortError as err:
        raise MetricFailed("too short for PESQ (needs at least 0.25 s)") from err
    except pesq_lib.NoUtterancesError as err:
        raise MetricFailed("PESQ found no speech (silent or too quiet)") from err
    except (pesq_lib.PesqError, ValueError) as err:  # e.g. a NaN level estimate inside the C code
        raise MetricFailed(f"PESQ failed ({err})") from err


def estoi_score(estimate: np.ndarray, reference: np.ndarray, sr: int) -> float:
    """Extended STOI as pystoi defines it (it resamples to its own rate, METRICS["estoi"].rate); MetricFailed
    when too little non-silent speech is left (pystoi would return 1e-5)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi(reference, estimate, sr, extended=True))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        raise MetricFailed("too short for ESTOI (needs about 0.4 s of non-silent speech)")
    return value


def trim_to_common_length(estimate: np.ndarray, reference: np.ndarray, names=None):
    """Trim both to the shorter one; lengths differing by more than 1 % are an AudioError naming the files."""
    n_est, n_ref = len(estimate), len(reference)
    if lengths_differ(n_est, n_ref):
        what = f"{names[0]} and {names[1]}" if names else "estimate and reference"
        raise AudioError(f"{what} have {n_est} and {n_ref} samples (more than {LENGTH_TOLERANCE:.0%} apart): "
                         f"they do not belong together. Check that the folders hold the same utterances.")
    n = min(n_est, n_ref)
    return estimate[:n], reference[:n]


def _to_numpy(wav) -> np.ndarray:
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    wav = np.asarray(wav, dtype=np.float64)
    if wav.ndim != 1:
        raise ValueError(f"expected a 1-D signal, got shape {wav.shape}")
    return wav


def _score(name: str, estimate: np.ndarray, reference: np.ndarray, sr: int) -> float:
    if np.abs(reference).max(initial=0.0) < SILENCE_PEAK:
        raise MetricFailed("reference is silent")
    if name == "si_sdr":
        if np.abs(estimate).max(initial=0.0) < SILENCE_PEAK:
            raise MetricFailed("estimate is silent")  # SI-SDR is 0/0 there
        rate = metric_rate(name, sr)
        if rate != sr:
            estimate, reference = (resample_audio(torch.from_numpy(w), sr, rate).numpy() for w in (estimate, reference))
        return float(si_sdr(estimate, reference))
    if name == "estoi":
        return estoi_score(estimate, reference, sr)
    if np.abs(estimate).max(initial=0.0) < SILENCE_PEAK:
        raise MetricFailed("estimate is silent")  # PESQ's level alignment divides by its power
    return pesq_score(estimate, reference, sr, "nb" if name == "pesq_nb" else "wb")


def compute_metrics(estimate, reference, sr: int = SAMPLE_RATE, metrics=DEFAULT_METRICS, names=None) -> dict:
    """Score one estimate against its clean reference (1-D numpy arrays or torch tensors).

    metrics: any of "pesq" (wide-band), "pesq_nb", "estoi", "si_sdr".
    names: optional (estimate file, reference file), used in the length-mismatch message.
    Returns {metric: float (NaN when it could not be computed), "errors": "metric: why; ..." or ""}.
    """
    unknown = [m for m in metrics if m not in INTRUSIVE_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(INTRUSIVE_METRICS)}")
    estimate, reference = trim_to_common_length(_to_numpy(estimate), _to_numpy(reference), names)
    result, errors = {}, []
    for name in metrics:
        try:
            result[name] = _score(name, estimate, reference, sr)
        except MetricFailed as why:
            result[name] = float("nan")
            errors.append(f"{name}: {why}")
    result["errors"] = "; ".join(errors)
    return result
