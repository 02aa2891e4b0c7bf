"""Enhancement from disk: a folder, file or list of noisy files in, same-named enhanced files out.

Every input is checked before the model loads; outputs are written atomically, existing ones skipped (a rerun
resumes), and `enhance_settings.json` records the checkpoint and every setting that changes outputs, so a
rerun with other settings stops instead of mixing outputs. The enhancement itself is sgmse_nc.enhance.core.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sgmse_nc.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioError, list_audio, read_audio, resample_audio, rms, write_audio
from sgmse_nc.checks import Header, Problem, Requirements, check_audio_files, problems_message
from sgmse_nc.errors import Interrupted, UserError
from sgmse_nc.io import refuse_other_params, remove_leftovers, write_json
from sgmse_nc.spec import peak_normalise

if TYPE_CHECKING:
    from sgmse_nc.diffusion.model import ScoreModel  # imported when a model is loaded: checks and errors stay fast

from sgmse_nc.enhance.core import (DEFAULT_CHUNK_SECONDS, MIN_INPUT_SAMPLES, OVERLAP_SECONDS, SILENT_REFERENCE_RMS, Plan,
                                   check_options, chunk_samples, default_batch_size, encode_reference,
                                   enhance_batch, stream_seed)

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------ from disk

@dataclass(frozen=True)
class Input:
    name: Path  # relative output name; with the seed it fixes the file's randomness
    noisy: Path
    reference: Path | None


def collect_inputs(noisy, ref_dir=None) -> tuple[list[Input], Path | None]:
    """The inputs of `--noisy`: a folder (searched recursively), one audio file, or a list file (one path per
    line, relative to the list's folder; `#` starts a comment). Returns them and the folder scanned, if any."""
    noisy = Path(noisy)
    if ref_dir is not None and not Path(ref_dir).is_dir():
        raise UserError(f"--ref-dir {ref_dir}: folder not found. Give the folder of noise-only references (same "
                        f"names as the noisy files), or drop --ref-dir to enhance unconditionally.")
    folder = None
    if noisy.is_dir():
        folder = noisy
        files = list_audio(noisy)
        names = [f.relative_to(noisy) for f in files]
        if not files:
            raise UserError(f"--noisy {noisy}: no .wav/.flac files in this folder. Point --noisy at a folder of "
                            f"noisy recordings, an audio file, or a list file (one path per line).")
    elif noisy.suffix.lower() in AUDIO_EXTENSIONS:
        if not noisy.is_file():
            raise UserError(f"--noisy {noisy}: file not found. Check the path.")
        files, names = [noisy], [Path(noisy.name)]
    elif noisy.is_file():
        files = _read_list(noisy)
        names = _common_relative(files)
    else:
        raise UserError(f"--noisy {noisy}: not found. Give a folder of noisy recordings, an audio file, or a list "
                        f"file (one path per line).")
    refs = [Path(ref_dir) / n for n in names] if ref_dir else [None] * len(files)
    return [Input(n, f, r) for n, f, r in zip(names, files, refs)], folder


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise UserError(f"--noisy {path}: neither a folder, a .wav/.flac file nor a text list of paths.") from None
    entries = [line.split("#")[0].strip() for line in lines]
    files = [(path.parent / e) if not Path(e).is_absolute() else Path(e) for e in entries if e]
    if not files:
        raise UserError(f"--noisy {path}: the list holds no paths. Write one audio path per line.")
    bad = [str(f) for f in files if f.suffix.lower() not in AUDIO_EXTENSIONS]
    if bad:
        raise UserError(f"--noisy {path}: {len(bad)} entry(ies) are not .wav/.flac paths: {', '.join(bad)}. "
                        f"Write one audio path per line.")
    seen, duplicates = set(), []
    for f in files:
        key = f.resolve()
        (duplicates.append(str(f)) if key in seen else seen.add(key))
    if duplicates:
        raise UserError(f"--noisy {path}: listed more than once: {', '.join(duplicates)}. Keep one line each.")
    return files


def _common_relative(files: list[Path]) -> list[Path]:
    """Names relative to the listed files' common folder (unique, since the files are)."""
    resolved = [f.resolve() for f in files]
    root = Path(os.path.commonpath([r.parent for r in resolved]))
    return [r.relative_to(root) for r in resolved]


def check_out_dir(out_dir: Path, inputs: list[Input], folders: dict[str, Path | None]) -> None:
    """--out must be a writable folder, outside the input folders (their recursive scan would take outputs
    as inputs) and never the path of an input."""
    out = out_dir.resolve()
    for option, folder in folders.items():
        if folder is not None and out.is_relative_to(Path(folder).resolve()):
            raise UserError(f"--out {out_dir} lies inside {option} {folder}: inputs are never written to, and a "
                            f"rerun would take the outputs as inputs. Choose an --out outside it.")
    sources = {p.resolve() for i in inputs for p in (i.noisy, i.reference) if p is not None}
    clash = [str(out_dir / i.name) for i in inputs if (out / i.name).resolve() in sources]
    if clash:
        raise UserError(f"--out {out_dir} would overwrite input file(s) {', '.join(clash)}. Choose another --out.")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"--out {out_dir}: {existing} is a file, not a folder. Choose another --out.")
    try:  # the only reliable test (root ignores permission bits, read-only mounts ignore them too)
        probe = tempfile.mkdtemp(prefix=".write-test-", dir=existing)
        os.rmdir(probe)
    except OSError as err:
        raise UserError(f"--out {out_dir}: cannot write in {existing} ({err.strerror}). Choose a writable "
                        f"--out, or fix the folder's permissions.") from None


def check_inputs(inputs: list[Input], resample: bool, channels: str | None
                 ) -> tuple[dict[Path, Header], dict[Path, Problem]]:
    """Headers of every noisy file and reference; problems by input name (the first one of each input)."""
    rate_fix = "Pass --resample (resampled to 16 kHz and back), or resample the file(s) to 16 kHz."
    req = Requirements(sample_rate=None if resample else SAMPLE_RATE, rate_fix=rate_fix, mono=channels is None,
                       channels_fix="Pass --channels mix (down-mix) or --channels each (every channel "
                                    "enhanced), or convert to mono.", min_samples=MIN_INPUT_SAMPLES)
    missing = {i.name: Problem(i.reference, "no noise reference of this name",
                               "Add a same-named noise-only file to --ref-dir, or drop --ref-dir (unconditional).")
               for i in inputs if i.reference is not None and not i.reference.is_file()}
    paths = [i.noisy for i in inputs] + [i.reference for i in inputs
                                         if i.reference is not None and i.name not in missing]
    headers, found = check_audio_files(paths, req)
    by_path = {p.path: p for p in found}
    problems = dict(missing)
    for i in inputs:
        for path in (i.noisy, i.reference):
            if path in by_path and i.name not in problems:
                problems[i.name] = by_path[path]
    return headers, problems


def load_model(ckpt, device: str = "cpu", use_ema: bool = True, encoder_weights=None) -> "ScoreModel":
    from sgmse_nc.diffusion.model import ScoreModel

    path = Path(ckpt)
    _read_checkpoint(path)
    try:
        return ScoreModel.load_for_inference(path, map_location=device, use_ema=use_ema,
                                             encoder_weights=encoder_weights)
    except (ValueError, FileNotFoundError) as err:
        raise UserError(str(err)) from err


def _read_checkpoint(path: Path) -> dict:
    """The checkpoint's content without building the model (UserError when it is none of ours)."""
    from sgmse_nc.diffusion.checkpoints import read_our_checkpoint
    try:
        return read_our_checkpoint(path)
    except (ValueError, FileNotFoundError) as err:
        raise UserError(f"--ckpt {err}. Point --ckpt at a .ckpt written by train.py (e.g. outputs/<run>/"
                        f"checkpoints/last.ckpt); a published SGMSE+ checkpoint is used through training's "
                        f"init_from_sgmse=<path>.") from None


def enhance_folder(ckpt, noisy_dir, out_dir, ref_dir=None, device: str = "cpu", batch_size: int | None = None,
                   chunk_seconds: float = DEFAULT_CHUNK_SECONDS, guidance_scale: float | None = None,
                   resample: bool = False, overwrite: bool = False, seed: int | None = 0, use_ema: bool = True,
                   skip_bad: bool = False, channels: str | None = None, ref_strategy: str | None = None,
                   ref_seconds: float = 1.0, encoder_weights=None, **sampler_overrides) -> dict:
    """Enhance the inputs of `noisy_dir` (a folder, an audio file or a list file) into `out_dir` (same relative
    names, input length, rate and channels).

    Every input is checked before any model work: a problem stops the run with all of them listed, or, with
    `skip_bad`, those files are skipped (listed in the summary). ref_dir: noise-only references with the
    same relative names (None: unconditional). Files already in `out_dir` are skipped unless `overwrite`, so
    an interrupted run resumes; inputs are never written to. Returns the summary: files, enhanced,
    skipped_existing, skipped_bad / failed ({name: reason}).
    ref_strategy: noise_ref_dir (the default with a ref_dir), from_noisy_pauses (a `ref_seconds` reference from
    the pauses of each noisy file, sgmse_nc.data.pauses) or none (the default without a ref_dir).
    encoder_weights: the frozen CLAP/PANNs weight file, when it has moved since training (sha256 checked).
    """
    ref_strategy = ref_strategy or ("noise_ref_dir" if ref_dir else "none")
    if ref_strategy not in REF_STRATEGIES:
        raise UserError(f"--ref-strategy {ref_strategy}: choose one of {', '.join(REF_STRATEGIES)}.")
    if (ref_strategy == "noise_ref_dir") != bool(ref_dir):
        raise UserError("--ref-dir goes with --ref-strategy noise_ref_dir (and only with it).")
    pauses = ref_strategy == "from_noisy_pauses"
    batch_size = default_batch_size(device) if batch_size is None else batch_size
    check_options(batch_size, chunk_seconds, guidance_scale, channels=channels, **sampler_overrides)
    out_dir = Path(out_dir)
    inputs, folder = collect_inputs(noisy_dir, ref_dir)
    check_out_dir(out_dir, inputs, {"--noisy": folder, "--ref-dir": ref_dir})
    headers, problems = check_inputs(inputs, resample, channels)
    if problems and not skip_bad:
        raise UserError(problems_message(list(problems.values()), len(inputs), "nothing was enhanced",
                                         f"or pass --skip-bad to enhance the {len(inputs) - len(problems)} "
                                         f"others"))
    state = _read_checkpoint(Path(ckpt))
    settings = {"ckpt": str(Path(ckpt).resolve()), "ckpt_step": state.get("global_step"),
                "ref_dir": str(Path(ref_dir).resolve()) if ref_dir else None, "guidance_scale": guidance_scale,
                "use_ema": use_ema, "seed": seed, "chunk_seconds": chunk_seconds, "resample": resample,
                "channels": channels, **sampler_overrides,
                **({"ref_strategy": ref_strategy, "ref_seconds": ref_seconds} if pauses else {})}
    del state
    _check_settings(out_dir, settings, overwrite)
    remove_leftovers(out_dir)  # temporary files of writes a killed run left behind
    usable = [i for i in inputs if i.name not in problems]
    done = {i.name for i in usable if not overwrite and (out_dir / i.name).is_file()}
    summary = {"files": len(inputs), "enhanced": 0, "skipped_existing": len(done),
               "skipped_bad": {str(n): str(p) for n, p in problems.items()}, "failed": {}}
    if len(done) == len(usable):
        log.info("all %d usable file(s) already enhanced in %s", len(usable), out_dir)
        return summary

    model = load_model(ckpt, device, use_ema, encoder_weights)
    _record_settings(out_dir, settings)  # only now: a checkpoint that does not load leaves no record
    if ref_dir and not model.conditional:
        log.warning("%s is an unconditional model: the references in %s are not used", ckpt, ref_dir)
    try:
        _FolderRun(model, usable, headers, done, out_dir, resample, channels, batch_size, chunk_seconds,
                   seed, guidance_scale, sampler_overrides, skip_bad, summary,
                   pause_seconds=ref_seconds if pauses else None).run()
    except KeyboardInterrupt:
        left = len(usable) - len(done) - summary["enhanced"] - len(summary["failed"])
        raise Interrupted(f"{summary['enhanced']} file(s) finished in {out_dir} this run ({len(done)} were "
                          f"there before), {left} left. Rerun the same command to resume; finished files are "
                          f"kept and give the same result.") from None
    return summary


class _FolderRun:
    """The batches over every usable input (see the module docstring), reading each file when its first
    batch comes and writing it as soon as all its chunks are enhanced."""

    def __init__(self, model, inputs, headers, done, out_dir, resample, channels, batch_size, chunk_seconds,
                 seed, guidance_scale, sampler_overrides, skip_bad, summary, pause_seconds=None):
        from tqdm import tqdm

        self.pause_seconds = pause_seconds  # from_noisy_pauses: references from each input's own pauses

        self.model, self.inputs, self.done, self.out_dir = model, inputs, done, out_dir
        self.resample, self.channels, self.skip_bad, self.summary = resample, channels, skip_bad, summary
        self.guidance_scale, self.sampler_overrides = guidance_scale, sampler_overrides
        self.streams: list[tuple[int, int]] = []  # (input, channel); channel -1: mono or down-mixed
        lengths, seeds = [], []
        for k, item in enumerate(inputs):
            header = headers[item.noisy]
            split = channels == "each" and header.channels > 1
            for c in (range(header.channels) if split else [-1]):
                self.streams.append((k, c))
                lengths.append(header.samples_at(SAMPLE_RATE))
                name = item.name.as_posix() + (f"#{c}" if c >= 0 else "")
                seeds.append(stream_seed(seed, name))
        chunk, overlap = chunk_samples(chunk_seconds, SAMPLE_RATE, OVERLAP_SECONDS)
        self.plan = Plan.make(lengths, seeds, chunk, overlap, batch_size, model.spec.hop_length,
                               model.time_multiple)
        self.headers = headers
        self.loaded: dict[int, dict] = {}  # input -> {"wavs", "norms", "conds", "pieces"}
        self.remaining = {k: sum(self.plan.units_of(s) for s, (i, _) in enumerate(self.streams) if i == k)
                          for k in range(len(inputs))}
        self.bar = tqdm(total=len(inputs) - len(done), unit="file", desc="enhance")

    def run(self) -> None:
        try:
            for batch in self.plan.batches:
                # a batch with anything left to do is computed whole, finished files included: the others'
                # results then do not depend on what an earlier, interrupted run already wrote
                if not any(self._needed(self.streams[u.stream][0]) for u in batch):
                    continue
                batch = [u for u in batch if self._load(self.streams[u.stream][0])]
                if not batch:
                    continue
                wavs, conds = [], []
                for u in batch:
                    k, c = self.streams[u.stream]
                    entry = self.loaded[k]
                    wavs.append(entry["wavs"][c] / entry["norms"][c])
                    conds.append(entry["conds"][c])
                out = enhance_batch(self.model, batch, wavs, conds, self.guidance_scale, self.sampler_overrides)
                for u, wav in zip(batch, out):
                    k, c = self.streams[u.stream]
                    entry = self.loaded[k]
                    entry["pieces"].setdefault(u.stream, {})[u.start] = wav * entry["norms"][c]
                    self.remaining[k] -= 1
                    if self.remaining[k] == 0:
                        entry = self.loaded.pop(k)
                        if self._needed(k):
                            self._write(k, entry)
        finally:
            self.bar.close()

    def _needed(self, k: int) -> bool:
        return self.inputs[k].name not in self.done and self.inputs[k].name.as_posix() not in self.summary["failed"]

    def _load(self, k: int) -> bool:
        """Read input k (all its channels) and encode its reference once; False when it failed (skip_bad)."""
        item = self.inputs[k]
        if k in self.loaded or item.name.as_posix() in self.summary["failed"]:
            return k in self.loaded
        try:
            noisy = read_audio(item.noisy, SAMPLE_RATE, resample=self.resample, mono="all")
            reference = None
            if self.pause_seconds is not None:
                reference = pause_reference(item.noisy, noisy.mean(0), self.pause_seconds)
            elif item.reference is not None:
                reference = read_audio(item.reference, SAMPLE_RATE, resample=self.resample, mono="mean",
                                       min_samples=self.model.spec.n_fft)
                if rms(reference) < SILENT_REFERENCE_RMS:
                    log.warning("%s: the noise reference is silent (RMS below -80 dBFS); %s is enhanced with the "
                                "null condition, i.e. unconditionally", item.reference, item.noisy)
                    reference = None
        except AudioError as err:  # a file that changed, or whose samples are corrupt past a good header
            if not self.skip_bad:
                raise
            self.summary["failed"][item.name.as_posix()] = str(err)
            self.bar.update(1)
            return False
        planned = self.headers[item.noisy].samples_at(SAMPLE_RATE)  # what the batches were planned with
        noisy = torch.nn.functional.pad(noisy[:, :planned], (0, max(0, planned - noisy.shape[-1])))
        mix = self.channels != "each" or noisy.shape[0] == 1
        wavs = {-1: noisy.mean(0)} if mix else dict(enumerate(noisy))
        norms = {c: peak_normalise(w)[1] for c, w in wavs.items()}
        conds = {c: encode_reference(self.model, reference, norms[c]) for c in wavs}
        self.loaded[k] = {"wavs": wavs, "norms": norms, "conds": conds, "pieces": {}}
        return True

    def _write(self, k: int, entry: dict) -> None:
        item = self.inputs[k]
        header = self.headers[item.noisy]
        channels = [self.plan.join(s, entry["pieces"][s]) for s in sorted(entry["pieces"])]
        wav = torch.stack(channels)
        if header.sample_rate != SAMPLE_RATE:  # give the user back the rate and the exact length they gave us
            wav = resample_audio(wav, SAMPLE_RATE, header.sample_rate)
        wav = torch.nn.functional.pad(wav[:, :header.frames], (0, max(0, header.frames - wav.shape[-1])))
        path = self.out_dir / item.name
        try:
            write_audio(path, wav, header.sample_rate)
        except OSError as err:
            raise UserError(f"{path}: cannot be written ({err.strerror or err}). Free space or fix the folder, "
                            f"then rerun the same command to resume.") from None
        self.summary["enhanced"] += 1
        self.bar.update(1)


REF_STRATEGIES = ("noise_ref_dir", "from_noisy_pauses", "none")


def pause_reference(path, noisy: torch.Tensor, seconds: float) -> torch.Tensor:
    """A reference from the pauses of `noisy` (the from_noisy_pauses strategy); NoPauseError names the file."""
    from sgmse_nc.data.pauses import NoPauseError, reference_from_noisy_pauses

    try:
        return reference_from_noisy_pauses(noisy, SAMPLE_RATE, seconds)
    except NoPauseError as err:
        raise NoPauseError(f"{path}: {err}") from None


# ------------------------------------------------------------------------------------------ settings record

SETTINGS_FILE = "enhance_settings.json"


def _check_settings(out_dir: Path, settings: dict, overwrite: bool) -> None:
    """A rerun into `out_dir` with other settings than its files were made with must not mix outputs."""
    if not overwrite:
        refuse_other_params(out_dir / SETTINGS_FILE, settings, "Use another --out, or --overwrite to redo every "
                            "file.", error=UserError, key=None)


def _record_settings(out_dir: Path, settings: dict) -> None:
    write_json(out_dir / SETTINGS_FILE, settings)
