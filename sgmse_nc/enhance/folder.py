"""Enhancement from disk: a folder, file or list of noisy files in, same-named enhanced files out.

Every input is checked before the model loads; outputs are written atomically, existing ones skipped (a rerun
resumes), and `enhance_settings.json` records the checkpoint and every setting that changes outputs, so a
rerun with other settings stops instead of mixing outputs. The enhancement itself is sgmse_nc.enhance.core.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sgmse_nc.audio import AUDIO_EXTENSIONS, AudioError, list_audio, read_audio, resample_audio, rms, write_audio
from sgmse_nc.checks import Header, Problem, Requirements, check_audio_files, problems_message
from sgmse_nc.devices import check_device
from sgmse_nc.errors import Interrupted, OptionError, UserError
from sgmse_nc.io import input_holding, refuse_other_params, remove_leftovers, write_json
from sgmse_nc.spec import DEFAULT_SAMPLE_RATE, Spectrogram
from sgmse_nc.lock import folder_lock

if TYPE_CHECKING:
    from sgmse_nc.diffusion.model import ScoreModel  # imported when a model is loaded: checks and errors stay fast

from sgmse_nc.enhance.core import (DEFAULT_CHUNK_SECONDS, MIN_INPUT_SAMPLES, MIN_REF_SECONDS, OVERLAP_SECONDS,
                                   SILENT_REFERENCE_RMS, Plan, Stream, check_options, chunk_samples, default_batch_size,
                                   describe_reference_length, enhance_batch, reference_samples, reference_stretch,
                                   stream_seed)

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------ from disk

@dataclass(frozen=True)
class Input:
    name: Path  # relative output name; with the seed it fixes the file's randomness
    noisy: Path
    reference: Path | None


def collect_inputs(noisy, ref_dir=None) -> tuple[list[Input], Path | None]:
    """The inputs of `noisy`: a folder (searched recursively), one audio file, or a list file (one path per
    line, relative to the list's folder; `#` starts a comment). Returns them and the folder scanned, if any."""
    noisy = Path(noisy)
    if ref_dir is not None and not Path(ref_dir).is_dir():
        raise UserError(f"`ref_dir={ref_dir}`: folder not found. Give the folder of noise-only references (same "
                        f"names as the noisy files), or drop `ref_dir` to enhance unconditionally.")
    folder = None
    if noisy.is_dir():
        folder = noisy
        files = list_audio(noisy)
        names = [f.relative_to(noisy) for f in files]
        if not files:
            raise UserError(f"`noisy={noisy}`: no .wav/.flac files in this folder. Point `noisy` at a folder of "
                            f"noisy recordings, an audio file, or a list file (one path per line).")
    elif noisy.suffix.lower() in AUDIO_EXTENSIONS:
        if not noisy.is_file():
            raise UserError(f"`noisy={noisy}`: file not found. Check the path.")
        files, names = [noisy], [Path(noisy.name)]
    elif noisy.is_file():
        files = _read_list(noisy)
        names = _common_relative(files)
    else:
        raise UserError(f"`noisy={noisy}`: not found. Give a folder of noisy recordings, an audio file, or a list "
                        f"file (one path per line).")
    refs = [Path(ref_dir) / n for n in names] if ref_dir else [None] * len(files)
    return [Input(n, f, r) for n, f, r in zip(names, files, refs)], folder


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise UserError(f"`noisy={path}`: neither a folder, a .wav/.flac file nor a text list of paths.") from None
    entries = [line.split("#")[0].strip() for line in lines]
    files = [(path.parent / e) if not Path(e).is_absolute() else Path(e) for e in entries if e]
    if not files:
        raise UserError(f"`noisy={path}`: the list holds no paths. Write one audio path per line.")
    bad = [str(f) for f in files if f.suffix.lower() not in AUDIO_EXTENSIONS]
    if bad:
        raise UserError(f"`noisy={path}`: {len(bad)} entry(ies) are not .wav/.flac paths: {', '.join(bad)}. "
                        f"Write one audio path per line.")
    seen, duplicates = set(), []
    for f in files:
        key = f.resolve()
        (duplicates.append(str(f)) if key in seen else seen.add(key))
    if duplicates:
        raise UserError(f"`noisy={path}`: listed more than once: {', '.join(duplicates)}. Keep one line each.")
    return files


def _common_relative(files: list[Path]) -> list[Path]:
    """Names relative to the listed files' common folder (unique, since the files are)."""
    resolved = [f.resolve() for f in files]
    root = Path(os.path.commonpath([r.parent for r in resolved]))
    return [r.relative_to(root) for r in resolved]


def check_out_dir(out_dir: Path, inputs: list[Input], folders: dict[str, Path | None]) -> None:
    """`out` must be a writable folder, outside the input folders (their recursive scan would take outputs
    as inputs) and never the path of an input."""
    out = out_dir.resolve()
    holding = input_holding(out_dir, folders)
    if holding is not None:
        raise UserError(f"`out={out_dir}` lies inside `{holding[0]}={holding[1]}`: inputs are never written to, "
                        f"and a rerun would take the outputs as inputs. Choose an `out` outside it.")
    sources = {p.resolve() for i in inputs for p in (i.noisy, i.reference) if p is not None}
    clash = [str(out_dir / i.name) for i in inputs if (out / i.name).resolve() in sources]
    if clash:
        raise UserError(f"`out={out_dir}` would overwrite input file(s) {', '.join(clash)}. Choose another `out`.")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"`out={out_dir}`: {existing} is a file, not a folder. Choose another `out`.")
    try:  # the only reliable test (root ignores permission bits, read-only mounts ignore them too)
        probe = tempfile.mkdtemp(prefix=".write-test-", dir=existing)
        os.rmdir(probe)
    except OSError as err:
        raise UserError(f"`out={out_dir}`: cannot write in {existing} ({err.strerror}). Choose a writable "
                        f"`out`, or fix the folder's permissions.") from None


def check_inputs(inputs: list[Input], resample: bool, channels: str | None, spec: Spectrogram = Spectrogram()
                 ) -> tuple[dict[Path, Header], dict[Path, Problem]]:
    """Headers of every noisy file and reference; problems by input name (the first one of each input).
    spec: the model's spectrogram settings (its sample rate; one STFT window is the shortest input)."""
    khz = f"{spec.sample_rate / 1000:g} kHz"
    rate_fix = f"Pass `resample=True` (resampled to the model's {khz} and back), or resample the file(s) to {khz}."
    req = Requirements(sample_rate=None if resample else spec.sample_rate, rate_fix=rate_fix,
                       mono=channels is None, working_rate=spec.sample_rate,
                       channels_fix="Pass `channels='mix'` (down-mix) or `channels='each'` (every channel "
                                    "enhanced), or convert to mono.", min_samples=max(MIN_INPUT_SAMPLES, spec.n_fft))
    missing = {i.name: Problem(i.reference, "no noise reference of this name",
                               "Add a same-named noise-only file to `ref_dir`, or drop `ref_dir` (unconditional).")
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
    """A checkpoint of ours, or a published SGMSE+ one (unconditional, with its own settings)."""
    from sgmse_nc.diffusion.model import ScoreModel

    path = Path(ckpt)
    info = read_checkpoint_info(path)
    try:
        if info["kind"] == "sgmse":
            return ScoreModel.from_sgmse(path, map_location=device, use_ema=use_ema)
        return ScoreModel.load_for_inference(path, map_location=device, use_ema=use_ema,
                                             encoder_weights=encoder_weights)
    except (ValueError, FileNotFoundError) as err:
        raise UserError(str(err)) from err


def checkpoint_spec(state: dict) -> Spectrogram:
    """The spectrogram settings (and sample rate) a checkpoint of ours was trained with."""
    return Spectrogram.from_config(state["hyper_parameters"].get("spec"))


def read_checkpoint_info(path: Path) -> dict:
    """What enhancement needs to know before loading the model: {"kind": "ours" | "sgmse", "spec", "step"}.
    A file that is neither ours nor an SGMSE+ checkpoint we can read is a UserError naming it."""
    from sgmse_nc.diffusion.checkpoints import (CheckpointError, load_sgmse_checkpoint, read_our_checkpoint,
                                                sgmse_model_config)
    fix = ("Point `ckpt` at a .ckpt written by train.py (e.g. outputs/<run>/checkpoints/last.ckpt) or a "
           "published SGMSE+ checkpoint.")
    try:
        state = read_our_checkpoint(path)
        return {"kind": "ours", "spec": checkpoint_spec(state), "step": state.get("global_step"),
                "hparams": state.get("hyper_parameters", {})}
    except FileNotFoundError as err:
        raise UserError(f"`ckpt` {err}. {fix}") from None
    except CheckpointError as ours:
        try:  # a published SGMSE+ checkpoint? (read with the restricted unpickler: no foreign code runs)
            loaded = load_sgmse_checkpoint(path)
        except CheckpointError:
            raise UserError(f"`ckpt` {ours}. {fix}") from None
    try:
        config = sgmse_model_config(loaded["hparams"], path)
    except CheckpointError as err:
        raise UserError(f"`ckpt` {err}") from None
    return {"kind": "sgmse", "spec": Spectrogram.from_config(config["spec"]), "step": loaded["global_step"],
            "hparams": config}


REF_STRATEGIES = ("noise_ref_dir", "from_noisy_pauses", "none")


@dataclass(frozen=True)
class EnhanceOptions:
    """How enhance_folder works: the enhance command fills it from its flags, the report from its config.

    Messages name these fields (e.g. `batch_size=0`); the command translates them into its flags.
    """
    device: str = "cpu"
    batch_size: int | None = None  # chunks enhanced together (None: 1 on a CPU, where batching is slower; 4 else)
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS  # longer files are enhanced in overlapping chunks (0: whole)
    guidance: float | None = None  # the guidance scale w (None: the model's)
    sampler: dict = field(default_factory=dict)  # the checkpoint's sampler settings to change: name, N, snr, ...
    ref_strategy: str | None = None  # noise_ref_dir (the default with a ref_dir), from_noisy_pauses or none
    ref_seconds: float | None = None  # reference length encoded (the centre stretch of each file, or the pauses
    #                                   taken); None: the checkpoint's ref_seconds (whole files / 1 s of pauses if none)
    resample: bool = False  # accept other rates than the model's (resampled in and back out)
    channels: str | None = None  # multi-channel input: "mix" (down-mix), "each" (every channel), None (refuse)
    seed: int | None = 0  # with each file's name, fixes its randomness
    use_ema: bool = True  # the EMA weights (False: the raw ones)
    encoder_weights: str | Path | None = None  # the frozen CLAP/PANNs weight file, when moved since training
    skip_bad: bool = False  # enhance the usable files and list the others, instead of stopping
    overwrite: bool = False  # redo files already in the output folder

    def check(self, ref_dir) -> str:
        """Refuse values that would run but give wrong or no output; returns the reference strategy to use."""
        strategy = self.ref_strategy or ("noise_ref_dir" if ref_dir else "none")
        if strategy not in REF_STRATEGIES:
            raise UserError(f"`ref_strategy={strategy!r}`: choose one of {', '.join(REF_STRATEGIES)}.")
        if (strategy == "noise_ref_dir") != bool(ref_dir):
            raise UserError("`ref_dir` goes with `ref_strategy='noise_ref_dir'` (and only with it).")
        check_options(1 if self.batch_size is None else self.batch_size, self.chunk_seconds, self.guidance,
                      self.channels, self.sampler)
        if self.ref_seconds is not None and not (isinstance(self.ref_seconds, (int, float)) and
                                                 MIN_REF_SECONDS <= self.ref_seconds < math.inf):
            raise OptionError(f"`ref_seconds={self.ref_seconds}`: give a reference length of at least "
                              f"{MIN_REF_SECONDS} s (a reference spans several STFT windows), or leave it unset "
                              f"(the checkpoint's ref_seconds).")
        check_device(self.device, f"`device={self.device}`")  # one line naming what this machine has
        return strategy

    def reference_seconds(self, strategy: str, model_seconds: float | None) -> float | None:
        """The reference length used: ref_seconds, else the checkpoint's; None: whole files (from_noisy_pauses,
        which needs a length: 1 s)."""
        seconds = self.ref_seconds if self.ref_seconds is not None else model_seconds
        return 1.0 if seconds is None and strategy == "from_noisy_pauses" else seconds

    def settings(self, ckpt: Path, step, ref_dir, strategy: str, model_seconds: float | None = None) -> dict:
        """What `enhance_settings.json` records: the checkpoint and every setting that changes outputs."""
        pauses = strategy == "from_noisy_pauses"
        seconds = self.reference_seconds(strategy, model_seconds)
        return {"ckpt": str(Path(ckpt).resolve()), "ckpt_step": step,
                "ref_dir": str(Path(ref_dir).resolve()) if ref_dir else None, "guidance_scale": self.guidance,
                "use_ema": self.use_ema, "seed": self.seed, "chunk_seconds": self.chunk_seconds,
                "resample": self.resample, "channels": self.channels, **self.sampler,
                # whole reference files (a checkpoint without ref_seconds) add nothing: folders made before resume
                **({"ref_strategy": strategy, "ref_seconds": seconds} if pauses else {}),
                **({"ref_seconds": seconds, "ref_crop": "centre"}
                   if strategy == "noise_ref_dir" and seconds is not None else {})}


def check_checkpoint_sampler(state: dict, overrides: dict, config_key: str | None = None) -> None:
    """The sampler settings a run would use (the checkpoint's, updated by `overrides`: name, N, snr, ...) checked
    against the checkpoint's SDE before any work: OptionError names the samplers and options it has. Messages
    name the overrides as `name=pc` (the command's flags), or as `<config_key>.name=pc` for a config's node."""
    from sgmse_nc.diffusion.sampling import check_sampler, sampler_settings
    from sgmse_nc.diffusion.sde import build_sde

    hparams = state.get("hyper_parameters", {})
    settings = sampler_settings(hparams.get("sampler"), **overrides)
    sde = build_sde(**(hparams.get("sde") or {}))
    try:
        check_sampler(sde, **settings)
    except OptionError as err:
        given = " ".join(f"{config_key}.{k}={v}" if config_key else f"`{k}={v}`"
                         for k, v in overrides.items() if v is not None) or "the checkpoint's own sampler"
        reason = str(err).split(" (sde=sb")[0].rstrip(".")
        raise OptionError(f"{given}: {reason} (the checkpoint's SDE is {sde.name}).") from None


def enhance_folder(ckpt, noisy, out, options: EnhanceOptions | None = None, ref_dir=None) -> dict:
    """Enhance the inputs of `noisy` (a folder, an audio file or a list file) into the folder `out` (same
    relative names, input length, rate and channels), as `options` say.

    Every input is checked before any model work: a problem stops the run with all of them listed, or, with
    `skip_bad`, those files are skipped (listed in the summary). ref_dir: noise-only references with the
    same relative names (None: unconditional, or references from the pauses with
    `ref_strategy='from_noisy_pauses'`). Files already in `out` are skipped unless `overwrite`, so an
    interrupted run resumes; inputs are never written to. Returns the summary: files, enhanced,
    skipped_existing, skipped_bad / failed ({name: reason}).
    """
    options = options or EnhanceOptions()
    strategy = options.check(ref_dir)
    batch_size = default_batch_size(options.device) if options.batch_size is None else options.batch_size
    out_dir = Path(out)
    inputs, folder = collect_inputs(noisy, ref_dir)
    check_out_dir(out_dir, inputs, {"noisy": folder, "ref_dir": ref_dir})
    info = read_checkpoint_info(Path(ckpt))  # its rate and STFT settings decide which inputs it can take
    headers, problems = check_inputs(inputs, options.resample, options.channels, info["spec"])
    if problems and not options.skip_bad:
        raise UserError(problems_message(list(problems.values()), len(inputs), "nothing was enhanced",
                                         f"or pass `skip_bad=True` to enhance the {len(inputs) - len(problems)} "
                                         f"others"))
    check_checkpoint_sampler({"hyper_parameters": info["hparams"]}, options.sampler)
    model_seconds = info["hparams"].get("ref_seconds")  # the reference length training encoded (None: not kept)
    settings = options.settings(ckpt, info["step"], ref_dir, strategy, model_seconds)
    with folder_lock(out_dir, "enhancement"):  # one writer per output folder: refused at start, not mixed
        _check_settings(out_dir, settings, options.overwrite)
        remove_leftovers(out_dir)  # temporary files of writes a killed run left behind
        usable = [i for i in inputs if i.name not in problems]
        done = {i.name for i in usable if not options.overwrite and (out_dir / i.name).is_file()}
        summary = {"files": len(inputs), "enhanced": 0, "skipped_existing": len(done),
                   "skipped_bad": {str(n): str(p) for n, p in problems.items()}, "failed": {}}
        if len(done) == len(usable):
            log.info("all %d usable file(s) already enhanced in %s", len(usable), out_dir)
            return summary

        model = load_model(ckpt, options.device, options.use_ema, options.encoder_weights)
        _record_settings(out_dir, settings)  # only now: a checkpoint that does not load leaves no record
        if ref_dir and not model.conditional:
            log.warning("%s is an unconditional model: the references in %s are not used", ckpt, ref_dir)
        elif strategy == "noise_ref_dir":
            log.info("references: %s", describe_reference_length(model_seconds, options.ref_seconds))
        seconds = options.reference_seconds(strategy, model_seconds)
        try:
            _FolderRun(model, usable, headers, done, out_dir, options, batch_size, summary,
                       pause_seconds=seconds if strategy == "from_noisy_pauses" else None,
                       ref_samples=reference_samples(model, seconds)).run()
        except KeyboardInterrupt:
            left = len(usable) - len(done) - summary["enhanced"] - len(summary["failed"])
            raise Interrupted(f"{summary['enhanced']} file(s) finished in {out_dir} this run ({len(done)} were "
                              f"there before), {left} left. Rerun the same command to resume; finished files are "
                              f"kept and give the same result.") from None
        return summary


class _FolderRun:
    """The batches over every usable input (see the module docstring), reading each file when its first
    batch comes and writing it as soon as all its chunks are enhanced."""

    def __init__(self, model, inputs, headers, done, out_dir, options: EnhanceOptions, batch_size: int, summary,
                 pause_seconds=None, ref_samples: int | None = None):
        from tqdm import tqdm

        self.pause_seconds = pause_seconds  # from_noisy_pauses: references from each input's own pauses
        self.ref_samples = ref_samples  # the reference stretch encoded (None: whole files)
        self.model, self.inputs, self.headers, self.done, self.out_dir = model, inputs, headers, done, out_dir
        self.options, self.summary = options, summary
        self.rate = rate = model.sample_rate  # inputs at other rates are resampled to it (resample=True) and back
        self.streams: list[tuple[int, int]] = []  # (input, channel); channel -1: mono or down-mixed
        self.streams_of: dict[int, list[int]] = {}  # input -> its streams
        lengths, seeds = [], []
        for k, item in enumerate(inputs):
            header = headers[item.noisy]
            split = options.channels == "each" and header.channels > 1
            for c in (range(header.channels) if split else [-1]):
                self.streams_of.setdefault(k, []).append(len(self.streams))
                self.streams.append((k, c))
                lengths.append(header.samples_at(rate))
                name = item.name.as_posix() + (f"#{c}" if c >= 0 else "")
                seeds.append(stream_seed(options.seed, name))
        chunk, overlap = chunk_samples(options.chunk_seconds, rate, OVERLAP_SECONDS)
        self.plan = Plan.make(lengths, seeds, chunk, overlap, batch_size, model.spec.hop_length,
                              model.time_multiple)
        self.loaded: dict[int, dict[int, Stream]] = {}  # input -> {stream index: Stream}
        self.remaining = {k: sum(self.plan.units_of(s) for s in streams) for k, streams in self.streams_of.items()}
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
                streams = [self.loaded[self.streams[u.stream][0]][u.stream] for u in batch]
                pieces = enhance_batch(self.model, batch, streams, self.options.guidance, self.options.sampler)
                for u, stream, piece in zip(batch, streams, pieces):
                    stream.pieces[u.start] = piece
                    k = self.streams[u.stream][0]
                    self.remaining[k] -= 1
                    if self.remaining[k] == 0:
                        streams_of_k = self.loaded.pop(k)
                        if self._needed(k):
                            self._write(k, streams_of_k)
        finally:
            self.bar.close()

    def _needed(self, k: int) -> bool:
        return self.inputs[k].name not in self.done and self.inputs[k].name.as_posix() not in self.summary["failed"]

    def _load(self, k: int) -> bool:
        """Read input k (all its channels) and encode its reference once; False when it failed (skip_bad)."""
        item = self.inputs[k]
        if k in self.loaded or item.name.as_posix() in self.summary["failed"]:
            return k in self.loaded
        resample = self.options.resample
        try:
            noisy = read_audio(item.noisy, self.rate, resample=resample, mono="all")
            reference = None
            if self.pause_seconds is not None:
                reference = pause_reference(item.noisy, noisy.mean(0), self.pause_seconds, self.rate)
            elif item.reference is not None:
                reference = reference_stretch(read_audio(item.reference, self.rate, resample=resample, mono="mean",
                                                         min_samples=self.model.spec.n_fft), self.ref_samples)
                if rms(reference) < SILENT_REFERENCE_RMS:
                    log.warning("%s: the noise reference is silent (RMS below -80 dBFS); %s is enhanced with the "
                                "null condition, i.e. unconditionally", item.reference, item.noisy)
                    reference = None
        except AudioError as err:  # a file that changed, or whose samples are corrupt past a good header
            if not self.options.skip_bad:
                raise
            self.summary["failed"][item.name.as_posix()] = str(err)
            self.bar.update(1)
            return False
        planned = self.headers[item.noisy].samples_at(self.rate)  # what the batches were planned with
        noisy = torch.nn.functional.pad(noisy[:, :planned], (0, max(0, planned - noisy.shape[-1])))
        self.loaded[k] = {s: Stream.prepare(self.model, noisy.mean(0) if c < 0 else noisy[c], reference)
                          for s in self.streams_of[k] for c in [self.streams[s][1]]}
        return True

    def _write(self, k: int, streams: dict[int, Stream]) -> None:
        item = self.inputs[k]
        header = self.headers[item.noisy]
        wav = torch.stack([self.plan.join(s, streams[s].pieces) for s in sorted(streams)])
        if header.sample_rate != self.rate:  # give the user back the rate and the exact length they gave us
            wav = resample_audio(wav, self.rate, header.sample_rate)
        wav = torch.nn.functional.pad(wav[:, :header.frames], (0, max(0, header.frames - wav.shape[-1])))
        path = self.out_dir / item.name
        try:
            write_audio(path, wav, header.sample_rate)
        except OSError as err:
            raise UserError(f"{path}: cannot be written ({err.strerror or err}). Free space or fix the folder, "
                            f"then rerun the same command to resume.") from None
        self.summary["enhanced"] += 1
        self.bar.update(1)


def pause_reference(path, noisy: torch.Tensor, seconds: float, sample_rate: int = DEFAULT_SAMPLE_RATE) -> torch.Tensor:
    """A reference from the pauses of `noisy` (the from_noisy_pauses strategy); NoPauseError names the file."""
    from sgmse_nc.data.pauses import NoPauseError, reference_from_noisy_pauses

    try:
        return reference_from_noisy_pauses(noisy, sample_rate, seconds)
    except NoPauseError as err:
        raise NoPauseError(f"{path}: {err}") from None


# ------------------------------------------------------------------------------------------ settings record

SETTINGS_FILE = "enhance_settings.json"


def _check_settings(out_dir: Path, settings: dict, overwrite: bool) -> None:
    """A rerun into `out_dir` with other settings than its files were made with must not mix outputs."""
    if not overwrite:
        refuse_other_params(out_dir / SETTINGS_FILE, settings, "Use another `out`, or `overwrite=True` to redo "
                            "every file.", error=UserError, key=None)


def _record_settings(out_dir: Path, settings: dict) -> None:
    write_json(out_dir / SETTINGS_FILE, settings)
