"""Enhance a folder of noisy wavs with a trained checkpoint.

    python enhance.py --ckpt outputs/demo/runs/<time>/checkpoints/last.ckpt \\
        --noisy data/demo/test/noisy --ref-dir data/demo/test/noise_ref --out enhanced/demo
"""
import argparse
import logging
import sys

from sgmse_nc.sampling import SAMPLERS


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint written by train.py")
    p.add_argument("--noisy", required=True, help="folder of noisy wav/flac files (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (same relative names); existing files are skipped")
    p.add_argument("--ref-dir", default=None, help="noise-only references with the same names (omit: unconditional)")
    p.add_argument("--ref-strategy", choices=["noise_ref_dir", "from_noisy_pauses", "none"], default=None,
                   help="where references come from: noise_ref_dir (--ref-dir; the default when it is given), "
                        "from_noisy_pauses (the pauses of each noisy file, found by a VAD), none (unconditional)")
    p.add_argument("--ref-seconds", type=float, default=1.0, help="reference length for from_noisy_pauses")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale w (default: the model's)")
    p.add_argument("--sampler", choices=sorted(SAMPLERS), default=None,
                   help="default: the checkpoint's (conf/sampler/ at training); another sampler starts from its "
                        "own defaults")
    p.add_argument("--N", type=int, default=None, help="sampler steps (default: the checkpoint's, e.g. 30 for pc)")
    p.add_argument("--snr", type=float, default=None, help="pc corrector snr (default: the checkpoint's, e.g. 0.5)")
    p.add_argument("--corrector-steps", type=int, default=None, help="pc corrector steps (default: the checkpoint's)")
    p.add_argument("--order", type=int, default=None, choices=[1, 2], help="dpm solver order (default: the "
                                                                           "checkpoint's, else 2)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--chunk-seconds", type=float, default=0.0, help="cut longer files into chunks (0: whole files)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--resample", action="store_true", help="accept non-16 kHz input (resampled in and back out)")
    p.add_argument("--overwrite", action="store_true", help="re-enhance files already in --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--raw-weights", action="store_true", help="use the raw instead of the EMA weights")
    return p.parse_args(argv)


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from sgmse_nc.audio import AudioError
    from sgmse_nc.enhancement import enhance_folder

    try:
        summary = enhance_folder(args.ckpt, args.noisy, args.out, ref_dir=args.ref_dir, ref_strategy=args.ref_strategy,
                                 ref_seconds=args.ref_seconds, device=args.device,
                                 batch_size=args.batch_size, chunk_seconds=args.chunk_seconds,
                                 guidance_scale=args.guidance, resample=args.resample, overwrite=args.overwrite,
                                 seed=args.seed, use_ema=not args.raw_weights, name=args.sampler, N=args.N,
                                 snr=args.snr, corrector_steps=args.corrector_steps, order=args.order)
    except (AudioError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"enhanced {summary['enhanced']} file(s), {summary['skipped_existing']} already done -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
