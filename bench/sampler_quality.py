"""Quality vs number of network evaluations: one checkpoint, several samplers, the same files.

    python bench/sampler_quality.py --ckpt outputs/demo/quickstart/checkpoints/last.ckpt --data data/demo/test \\
        pc:N=30 ode:N=30 heun:N=5 dpm:N=5,order=2 dpm:N=10,order=1

"evaluations" are network rows per utterance: N for the ODE samplers, 2N for pc, twice that under guidance
w != 1 (conditional and null rows), times the chunks of files longer than the chunk length.
Each setting is `sampler[:key=value,...]` (keys: N, rho and the sampler's options, see sgmse_nc/diffusion/sampling.py).
Prints a Markdown table (network evaluations per utterance, mean PESQ / ESTOI / SI-SDR, their change vs the
first setting, the per-file ESTOI improvement over the noisy input with its standard error, CPU and wall
seconds), each row as soon as it is measured, and writes the rows as JSON with
--json. Seeds are fixed, so reruns agree.
"""
import argparse
import json
import time

import numpy as np
import torch

from sgmse_nc.audio import list_audio, read_audio
from sgmse_nc.enhance.core import enhance
from sgmse_nc.eval.metrics import compute_metrics
from sgmse_nc.diffusion.model import ScoreModel
from sgmse_nc.threads import set_threads

METRICS = ("pesq", "estoi", "si_sdr")


def parse_setting(text: str) -> dict:
    name, _, rest = text.partition(":")
    setting = {"name": name}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        setting[key] = int(value) if value.lstrip("-").isdigit() else float(value)
    return setting


def scores(estimates, cleans) -> dict:
    """Mean of each metric, and the per-file values (for the improvement's standard error)."""
    rows = [compute_metrics(e.numpy(), c.numpy(), sr=16000, metrics=METRICS) for e, c in zip(estimates, cleans)]
    return {**{m: float(np.nanmean([r[m] for r in rows])) for m in METRICS},
            "per_file": {m: [float(r[m]) for r in rows] for m in METRICS}}


def improvement(row: dict, noisy: dict, metric: str) -> tuple[float, float]:
    """Mean per-file improvement over the noisy input and its standard error (population std / sqrt(n))."""
    delta = np.asarray(row["per_file"][metric]) - np.asarray(noisy["per_file"][metric])
    return float(delta.mean()), float(delta.std() / np.sqrt(len(delta)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", required=True, help="folder with noisy/, clean/ and noise_ref/ (same names)")
    p.add_argument("--files", type=int, default=0, help="first N files only (0: all)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=lambda v: v if v == "auto" else int(v), default=1)
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("settings", nargs="+", help="sampler[:key=value,...], e.g. pc:N=30 dpm:N=5,order=2")
    args = p.parse_args()
    set_threads(args.threads)
    model = ScoreModel.load_for_inference(args.ckpt)
    names = [f.name for f in list_audio(f"{args.data}/noisy")][: args.files or None]
    noisy = [read_audio(f"{args.data}/noisy/{n}") for n in names]
    clean = [read_audio(f"{args.data}/clean/{n}") for n in names]
    refs = [read_audio(f"{args.data}/noise_ref/{n}") for n in names]
    calls = []  # the batch of every network call: evaluations per utterance = items evaluated / utterances
    model.dnn.register_forward_pre_hook(lambda _, inputs: calls.append(inputs[0].shape[0]))
    print(f"{args.ckpt} ({model.sde.name}, predicts {model.prediction}), {len(names)} files of {args.data}, "
          f"threads={torch.get_num_threads()}")
    print("| sampler | evaluations | PESQ | ESTOI | SI-SDR [dB] | ΔPESQ | ΔSI-SDR [dB] | ESTOI − noisy ± s.e. "
          "| CPU s | wall s | wall s per file |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = [{"setting": "noisy input", "nfe": 0, **scores(noisy, clean), "cpu_s": 0.0, "wall_s": 0.0}]
    for text in [None, *args.settings]:  # one row at a time, so a long run shows its results as it goes
        if text is not None:
            setting = parse_setting(text)
            calls.clear()
            cpu, wall = time.process_time(), time.perf_counter()
            out = enhance(model, noisy, refs, batch_size=args.batch_size, seed=0, **setting)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            rows.append({"setting": text, "nfe": sum(calls) / len(names), **scores(out, clean), "cpu_s": cpu,
                         "wall_s": wall})
        r, ref = rows[-1], rows[min(1, len(rows) - 1)]
        r["estoi_gain"], r["estoi_gain_se"] = improvement(r, rows[0], "estoi")
        print(f"| {r['setting']} | {r['nfe']:g} | {r['pesq']:.3f} | {r['estoi']:.3f} | {r['si_sdr']:.2f} | "
              f"{r['pesq'] - ref['pesq']:+.3f} | {r['si_sdr'] - ref['si_sdr']:+.2f} | "
              f"{r['estoi_gain']:+.3f} ± {r['estoi_gain_se']:.3f} | {r['cpu_s']:.1f} | {r['wall_s']:.1f} | "
              f"{r['wall_s'] / len(names):.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
