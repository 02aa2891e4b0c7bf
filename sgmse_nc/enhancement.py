"""Enhancement as a library: waveforms in, waveforms out; batching across files, chunking of long files.

Each file is normalised by its own noisy peak (the SGMSE+ convention); its reference by the same factor.
References are encoded once per file; long files are cut into overlapping chunks that are enhanced as batch
items (all with their file's condition) and overlap-added back with linear cross-fades.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from sgmse_nc.audio import SAMPLE_RATE, AudioError, audio_info, list_audio, read_audio, resample_audio, write_audio
from sgmse_nc.condition import stack_conditions
from sgmse_nc.io import refuse_other_params, remove_leftovers, write_json
from sgmse_nc.model import ScoreModel
from sgmse_nc.spec import peak_normalise

log = logging.getLogger(__name__)


@dataclass
class _Chunk:
    file: int
    start: int
    stop: int


def chunk_bounds(length: int, chunk: int, overlap: int) -> list[tuple[int, int]]:
    """Windows of `chunk` samples with `overlap` samples shared between neighbours, covering [0, length)."""
    if chunk <= 0 or length <= chunk:
        return [(0, length)]
    hop = chunk - overlap
    starts = list(range(0, length - chunk, hop)) + [length - chunk]
    return [(s, s + chunk) for s in starts]


def overlap_add(pieces: list[torch.Tensor], bounds: list[tuple[int, int]], length: int, ramp: int) -> torch.Tensor:
    """Join chunks that cover [0, length): each is tapered linearly over `ramp` samples at its inner edges and
    the sum is divided by the summed tapers, so the result is exact wherever the chunks agree, however many
    overlap at a sample."""
    out, norm = torch.zeros(length), torch.zeros(length)
    for i, ((a, b), piece) in enumerate(zip(bounds, pieces)):
        w = torch.ones(b - a)
        r = min(ramp, (b - a) // 2)
        if r > 0:
            up = torch.linspace(0, 1, r + 2)[1:-1]
            if i > 0:
                w[:r] = up
            if i < len(bounds) - 1:
                w[-r:] = up.flip(0)
        out[a:b] += piece * w
        norm[a:b] += w
    return out / norm


@torch.no_grad()
def enhance(model: ScoreModel, noisy: list[torch.Tensor], references: list[torch.Tensor | None] | None = None,
            batch_size: int = 4, chunk_seconds: float = 0.0, overlap_seconds: float = 0.5, sample_rate: int = SAMPLE_RATE,
            guidance_scale: float | None = None, seed: int | None = 0, **sampler_overrides
            ) -> list[torch.Tensor]:
    """Enhance 16 kHz mono waveforms [T_i]; returns waveforms of the same lengths, on the CPU.

    references: per file a noise-only waveform or None (null condition → unconditional score).
    chunk_seconds > 0 cuts longer files into chunks (bounded memory on long recordings).
    """
    device = model.device
    spec = model.spec
    references = references or [None] * len(noisy)
    norms = [peak_normalise(w)[1] for w in noisy]

    conds: list = [None] * len(noisy)  # per file a condition of batch size one, or None
    if model.conditional:
        for i, ref in enumerate(references):  # once per file, before any sampling
            if ref is not None:
                r_wav = (ref / norms[i]).to(device)[None]
                conds[i] = model.encode(spec.to_spec(r_wav).unsqueeze(1), r_wav)

    chunk = int(chunk_seconds * sample_rate)
    overlap = min(int(overlap_seconds * sample_rate), chunk // 2) if chunk else 0
    chunks = [_Chunk(i, a, b) for i, w in enumerate(noisy) for a, b in chunk_bounds(w.numel(), chunk, overlap)]
    chunks.sort(key=lambda c: c.stop - c.start)  # similar lengths share a batch: less padding
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None

    pieces: dict[tuple[int, int], torch.Tensor] = {}
    for b in range(0, len(chunks), batch_size):
        batch = chunks[b:b + batch_size]
        longest = max(c.stop - c.start for c in batch)
        wavs = torch.stack([torch.nn.functional.pad(noisy[c.file][c.start:c.stop] / norms[c.file],
                                                    (0, longest - (c.stop - c.start))) for c in batch])
        y = spec.to_spec(wavs.to(device)).unsqueeze(1)
        cond = stack_conditions([conds[c.file] for c in batch])
        x_hat = model.enhance_spec(y, cond, guidance_scale=guidance_scale, generator=generator, **sampler_overrides)
        out = spec.to_wav(x_hat.squeeze(1), length=longest).cpu()
        for c, wav in zip(batch, out):
            pieces[(c.file, c.start)] = wav[:c.stop - c.start] * norms[c.file]

    results = []
    for i, w in enumerate(noisy):
        bounds = chunk_bounds(w.numel(), chunk, overlap)
        results.append(overlap_add([pieces[(i, a)] for a, _ in bounds], bounds, w.numel(), overlap))
    return results


def enhance_folder(ckpt, noisy_dir, out_dir, ref_dir=None, device: str = "cpu", batch_size: int = 4,
                   chunk_seconds: float = 0.0, guidance_scale: float | None = None, resample: bool = False,
                   overwrite: bool = False, seed: int | None = 0, use_ema: bool = True, ref_strategy: str | None = None,
                   ref_seconds: float = 1.0, **sampler_overrides) -> dict:
    """Enhance every wav under `noisy_dir` into `out_dir` (same relative names, input length and rate).

    ref_dir: noise-only references with the same relative names (None: unconditional). Files already in
    `out_dir` are skipped unless `overwrite`, so an interrupted run resumes; inputs are never written to.
    ref_strategy: noise_ref_dir (the default with a ref_dir), from_noisy_pauses (a `ref_seconds` reference
    from the pauses of each noisy file, sgmse_nc.data.pauses) or none (the default without a ref_dir).
    """
    ref_strategy = ref_strategy or ("noise_ref_dir" if ref_dir else "none")
    if ref_strategy not in ("noise_ref_dir", "from_noisy_pauses", "none"):
        raise ValueError(f"ref_strategy {ref_strategy!r}: choose noise_ref_dir, from_noisy_pauses or none.")
    if (ref_strategy == "noise_ref_dir") != bool(ref_dir):
        raise ValueError("--ref-dir goes with --ref-strategy noise_ref_dir (and only with it).")
    pauses = ref_strategy == "from_noisy_pauses"
    from tqdm import tqdm

    noisy_dir, out_dir = Path(noisy_dir), Path(out_dir)
    files = list_audio(noisy_dir)
    if not files:
        raise AudioError(f"{noisy_dir}: no .wav/.flac files found. Point --noisy at a folder of noisy recordings.")
    if out_dir.resolve() == noisy_dir.resolve() or (ref_dir and out_dir.resolve() == Path(ref_dir).resolve()):
        raise ValueError(f"{out_dir}: the output folder must differ from the input folders (inputs are never "
                         f"overwritten). Choose another --out.")
    names = [f.relative_to(noisy_dir) for f in files]
    refs = [Path(ref_dir) / n for n in names] if ref_dir else [None] * len(files)
    missing = [str(r) for r in refs if r is not None and not r.is_file()]
    if missing:
        raise AudioError(f"{len(missing)} reference file(s) missing in {ref_dir}, e.g. {missing[:3]}. Every noisy "
                         f"file needs a same-named noise-only reference there, or drop --ref-dir (unconditional).")
    _check_settings(out_dir, {"ckpt": str(Path(ckpt).resolve()), "ckpt_step": _trained_steps(ckpt),
                              "ref_dir": str(Path(ref_dir).resolve()) if ref_dir else None,
                              "guidance_scale": guidance_scale, "use_ema": use_ema, "seed": seed,
                              "chunk_seconds": chunk_seconds, **sampler_overrides,
                              **({"ref_strategy": ref_strategy, "ref_seconds": ref_seconds} if pauses else {})},
                    overwrite)
    remove_leftovers(out_dir)  # half-written files of an interrupted run
    todo = [i for i, n in enumerate(names) if overwrite or not (out_dir / n).is_file()]
    summary = {"files": len(files), "skipped_existing": len(files) - len(todo), "enhanced": 0}
    if not todo:
        log.info("all %d files already enhanced in %s", len(files), out_dir)
        return summary

    model = ScoreModel.load_for_inference(ckpt, map_location=device, use_ema=use_ema)
    if ref_dir and not model.conditional:
        log.warning("%s is an unconditional model: the references in %s are not used", ckpt, ref_dir)
    bar = tqdm(total=len(todo), unit="file", desc="enhance")
    for start in range(0, len(todo), batch_size * 8):  # read a block of files at a time, not the whole folder
        block = todo[start:start + batch_size * 8]
        rates = [audio_info(files[i]).samplerate for i in block]
        noisy = [read_audio(files[i], SAMPLE_RATE, resample=resample) for i in block]
        if pauses:
            references = [_pause_reference(files[i], wav, ref_seconds) for i, wav in zip(block, noisy)]
        else:
            references = [read_audio(refs[i], SAMPLE_RATE, resample=resample, min_samples=model.spec.n_fft)
                          if refs[i] is not None else None for i in block]
        enhanced = enhance(model, noisy, references, batch_size=batch_size, chunk_seconds=chunk_seconds,
                           guidance_scale=guidance_scale, seed=None if seed is None else seed + start,
                           **sampler_overrides)
        for i, wav, rate, src in zip(block, enhanced, rates, noisy):
            if rate != SAMPLE_RATE:  # give the user back the rate they gave us
                wav = resample_audio(wav, SAMPLE_RATE, rate)
            write_audio(out_dir / names[i], wav, rate)
            bar.update(1)
        summary["enhanced"] += len(block)
    bar.close()
    return summary


def _pause_reference(path, noisy: torch.Tensor, seconds: float) -> torch.Tensor:
    from sgmse_nc.data.pauses import NoPauseError, reference_from_noisy_pauses

    try:
        return reference_from_noisy_pauses(noisy, SAMPLE_RATE, seconds)
    except NoPauseError as err:
        raise NoPauseError(f"{path}: {err}") from None


SETTINGS_FILE = "enhance_settings.json"


def _trained_steps(ckpt) -> int | None:
    """The checkpoint's optimizer step: what identifies its weights (a resumed, finished run rewrites the file
    with the same weights, so its modification time says nothing)."""
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception:  # missing or not a Lightning checkpoint: load_for_inference reports it clearly
        return None


def _check_settings(out_dir: Path, settings: dict, overwrite: bool) -> None:
    """A rerun into `out_dir` with other settings than its files were made with must not mix outputs."""
    record = out_dir / SETTINGS_FILE
    if not overwrite:
        refuse_other_params(record, settings, "Use another --out, or --overwrite to redo every file.", key=None)
    if settings["ckpt_step"] is not None:  # an unreadable checkpoint fails later with its own message
        write_json(record, settings)
