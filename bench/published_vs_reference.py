"""Published SGMSE+ checkpoint layouts through our loader against sp-uhh/sgmse's own code, one process.

    git -C /path/to/sgmse.git archive HEAD | tar -x -C /tmp/sgmse_ref      # a checkout, never committed
    nice -n 10 python bench/published_vs_reference.py [--ref /tmp/sgmse_ref] [--seconds 1]

For each layout (ncsnpp, ncsnpp_v2 = the Schrödinger bridge, ncsnpp_48k) the reference writes a random-weight
checkpoint as its ScoreModel would (bench/sgmse_reference.py, which the tests share); prints the rate we read
and the largest difference of the network output (score or data prediction) relative to its peak, then the
Schrödinger-bridge enhancement of a noisy tone against the reference's enhancement.py steps (SB ODE, N = 5).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="/tmp/sgmse_ref", help="an export of sp-uhh/sgmse")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of the enhanced test signal")
    args = parser.parse_args()
    from bench import sgmse_reference as published
    from sgmse_nc.data.synthetic import speech_like
    from sgmse_nc.diffusion.model import ScoreModel
    from sgmse_nc.enhance.core import enhance

    published.REFERENCE = Path(args.ref)

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    for layout in published.PUBLISHED:
        path, reference, hp = published.write_reference_checkpoint(tmp / f"{layout}.ckpt", layout)
        model = ScoreModel.from_sgmse(path)
        g = torch.Generator().manual_seed(3)
        x_t, y = (0.3 * torch.randn(2, 1, hp["n_fft"] // 2 + 1, 64, dtype=torch.cfloat, generator=g) for _ in range(2))
        t = torch.tensor([0.2, 0.7])
        with torch.no_grad():
            want, got = published.reference_forward(reference, layout, x_t, y, t), model(x_t, y, t)
        print(f"{layout:11s} {model.sample_rate} Hz  sde={model.sde.name}  predicts {model.prediction}  "
              f"max |ours - reference| / peak = {((got - want).abs().max() / want.abs().max()).item():.1e}")
    path, reference, hp = published.write_reference_checkpoint(tmp / "sb.ckpt", "ncsnpp_v2")
    model = ScoreModel.from_sgmse(path)
    n = int(args.seconds * 16000)
    speech = torch.from_numpy(speech_like(n, np.random.default_rng(0))).float()
    noisy = speech + 0.02 * torch.randn(n, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = published.reference_sb_enhancement(path, reference, hp, noisy)
    (got,) = enhance(model, [noisy], chunk_seconds=0)
    print(f"SB ODE enhancement (N={hp['N']}, {args.seconds:g} s): max |ours - reference| / peak = "
          f"{((got - want).abs().max() / want.abs().max()).item():.1e}")


if __name__ == "__main__":
    main()
