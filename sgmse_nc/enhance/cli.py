"""The enhance command (sgmse-enhance, enhance.py): enhance noisy wavs with a trained checkpoint.

    sgmse-enhance --ckpt outputs/demo/quickstart/checkpoints/last.ckpt \\
        --noisy data/demo/test/noisy --ref-dir data/demo/test/noise_ref --out enhanced/demo

--noisy is a folder (searched recursively), one audio file, or a list file (one path per line). Every
input is checked first; any problem stops the run before the model is loaded, with all problems listed
(or, with --skip-bad, the other files are enhanced and the run ends with status 1). Rerunning the same
command resumes; Ctrl-C stops cleanly (status 130). Exit status 2: a problem to fix, named in one line.
"""
from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING

from sgmse_nc.cli import BATCH, GUIDANCE, SEED, STEPS, THREADS, ArgumentParser, Number, run_main
from sgmse_nc.enhance.core import CHANNEL_MODES, DEFAULT_CHUNK_SECONDS, MIN_CHUNK_SECONDS, MIN_REF_SECONDS
from sgmse_nc.diffusion.sampling import SAMPLERS

if TYPE_CHECKING:
    from sgmse_nc.enhance.folder import EnhanceOptions


def build_parser():
    import argparse

    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True,
                   help="checkpoint written by train.py, or a published SGMSE+ checkpoint (ncsnpp, ncsnpp_v2, "
                        "ncsnpp_48k; OUVE or Schrödinger bridge), run unconditionally with its own settings")
    p.add_argument("--noisy", required=True,
                   help="folder of noisy wav/flac files (searched recursively), one file, or a list file")
    p.add_argument("--out", required=True, help="output folder (same relative names); existing files are skipped")
    p.add_argument("--ref-dir", default=None, help="noise-only references with the same names (omit: unconditional)")
    p.add_argument("--ref-strategy", choices=["noise_ref_dir", "from_noisy_pauses", "none"], default=None,
                   help="where references come from: noise_ref_dir (--ref-dir; the default when it is given), "
                        "from_noisy_pauses (the pauses of each noisy file, found by a VAD), none (unconditional)")
    p.add_argument("--ref-seconds", type=Number(float, low=MIN_REF_SECONDS, high=600), default=None,
                   help="seconds of each reference encoded: the centre stretch of each --ref-dir file (looped when "
                        "shorter), or the pauses taken (from_noisy_pauses); default: the checkpoint's ref_seconds, "
                        "the length training encoded (a checkpoint without it: whole files, 1 s of pauses)")
    p.add_argument("--guidance", type=GUIDANCE, default=None, help="guidance scale w (default: the model's)")
    p.add_argument("--sampler", choices=sorted(SAMPLERS), default=None,
                   help="default: the checkpoint's (conf/sampler/ at training); another sampler starts from its "
                        "own defaults")
    p.add_argument("--N", type=STEPS, default=None,
                   help="sampler steps (default: the checkpoint's, e.g. 30 for pc)")
    p.add_argument("--snr", type=Number(float, low=0, low_open=True, high=10), default=None,
                   help="pc corrector snr (default: the checkpoint's, e.g. 0.5)")
    p.add_argument("--corrector-steps", type=Number(int, low=0, high=100), default=None, help="pc corrector steps (default: the checkpoint's)")
    p.add_argument("--order", type=Number(int, low=1, high=2), default=None, choices=[1, 2], help="dpm solver order (default: the "
                                                                           "checkpoint's, else 2)")
    p.add_argument("--batch-size", type=BATCH, default=None,
                   help="chunks enhanced together (default: 1 on a CPU, where batching is slower; 4 on "
                        "a GPU)")
    p.add_argument("--chunk-seconds", type=Number(float, low=0, high=3600), default=DEFAULT_CHUNK_SECONDS,
                   help=f"files longer than this are enhanced in overlapping chunks, so memory stays flat in the "
                        f"file length (default {DEFAULT_CHUNK_SECONDS:g}; at least {MIN_CHUNK_SECONDS:g}; "
                        f"0: whole files, memory grows with length)")
    p.add_argument("--channels", choices=CHANNEL_MODES, default=None,
                   help="multi-channel input: 'mix' down-mixes to mono, 'each' enhances every channel and writes "
                        "them back as channels (default: refuse multi-channel files)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip inputs that fail the check, enhance the rest, end with a summary and status 1")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:<index> or mps (default: cuda when available, else "
                                                   "cpu)")
    p.add_argument("--threads", type=THREADS, default=1,
                   help="CPU threads: a number, or auto = the cores free now (default 1: safe on a shared machine)")
    p.add_argument("--resample", action="store_true",
                   help="accept input at another rate than the model's (16 kHz, or 48 kHz for a 48 kHz model): "
                        "resampled in and back out, at the input's rate and length")
    p.add_argument("--overwrite", action="store_true", help="re-enhance files already in --out")
    p.add_argument("--seed", type=SEED, default=0, help="with each file's name, fixes its randomness")
    p.add_argument("--raw-weights", action="store_true", help="use the raw instead of the EMA weights")
    p.add_argument("--encoder-weights", default=None,
                   help="frozen CLAP/PANNs weight file, if moved since training (checked against its sha256)")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    """The exit status; a problem the user can fix is one `error: ...` line and status 2 (sgmse_nc.cli)."""
    return run_main(_run, argv)


# The library names its options in messages as `name` or `name=value` (sgmse_nc.enhance.folder.EnhanceOptions
# and enhance_folder's arguments); the command names its flags.
FLAGS = {"ckpt": "--ckpt", "noisy": "--noisy", "out": "--out", "ref_dir": "--ref-dir", "ref_strategy": "--ref-strategy",
         "ref_seconds": "--ref-seconds", "guidance": "--guidance", "name": "--sampler", "N": "--N", "snr": "--snr",
         "corrector_steps": "--corrector-steps", "order": "--order", "batch_size": "--batch-size",
         "chunk_seconds": "--chunk-seconds", "channels": "--channels", "skip_bad": "--skip-bad",
         "device": "--device", "resample": "--resample", "overwrite": "--overwrite", "seed": "--seed",
         "encoder_weights": "--encoder-weights"}
OPTION = re.compile(r"`(\w+)(?:=([^`]*))?`")


def as_flags(message: str) -> str:
    """A library message with its option names as this command's flags: `batch_size=0` -> --batch-size 0,
    `channels='mix'` -> --channels mix, `resample=True` -> --resample."""
    def flag(match: re.Match) -> str:
        name, value = match.groups()
        if name not in FLAGS:
            return match.group(0)
        return FLAGS[name] if value in (None, "True") else f"{FLAGS[name]} {value.strip(chr(39) + chr(34))}"
    return OPTION.sub(flag, message)


def options_from(args) -> "EnhanceOptions":
    from sgmse_nc.devices import default_device
    from sgmse_nc.enhance.folder import EnhanceOptions

    return EnhanceOptions(
        device=args.device or default_device(), batch_size=args.batch_size,
        chunk_seconds=args.chunk_seconds, guidance=args.guidance,
        sampler={"name": args.sampler, "N": args.N, "snr": args.snr, "corrector_steps": args.corrector_steps,
                 "order": args.order},
        ref_strategy=args.ref_strategy, ref_seconds=args.ref_seconds, resample=args.resample, channels=args.channels,
        seed=args.seed, use_ema=not args.raw_weights, encoder_weights=args.encoder_weights, skip_bad=args.skip_bad,
        overwrite=args.overwrite)


def _run(argv=None) -> int:
    import logging

    from sgmse_nc.enhance.folder import enhance_folder
    from sgmse_nc.errors import UserError
    from sgmse_nc.threads import set_threads

    args = parse_args(argv)
    set_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = enhance_folder(args.ckpt, args.noisy, args.out, options_from(args), ref_dir=args.ref_dir)
    except UserError as err:
        err.args = (as_flags(str(err)),)
        raise
    bad, failed = summary["skipped_bad"], summary["failed"]
    print(f"enhanced {summary['enhanced']} file(s), {summary['skipped_existing']} already done, {len(bad)} skipped "
          f"(bad input), {len(failed)} failed -> {args.out}")
    for title, files in (("skipped", bad), ("failed", failed)):
        for name, reason in files.items():
            print(f"  {title} {name}: {reason}")
    if bad or failed:
        print("fix the files listed above and rerun the same command: finished files are kept", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
