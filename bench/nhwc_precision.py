"""How far NCSN++ with NHWC feature maps (backbone.channels_last=true) is from the default NCHW net, on a
trained checkpoint and real inputs: the question that decides whether channels_last may become a default.

    python bench/nhwc_precision.py --ckpt outputs/ouve_demo/checkpoints/last.ckpt --data data/demo/test
    python bench/nhwc_precision.py --ckpt ... --data ... --nchw-groupnorm   # GroupNorm in NCHW inside NHWC

Every network call of an enhancement (the model's own sampler, EMA weights) is repeated by an NHWC copy of
the network on the very same inputs; per file it prints the largest and the median relative difference
(max |NHWC - NCHW| / max |NCHW|) over the calls, and the largest |group mean| / group std that a GroupNorm
saw in the first call: PyTorch's CPU GroupNorm on NHWC maps loses precision as that ratio grows. With
--nchw-groupnorm the NHWC copy normalises in NCHW (two copies per GroupNorm), which shows how much of the
difference is GroupNorm's. Random-weight figures are in bench/ncsnpp_vs_reference.py.
"""
import argparse
import contextlib
import copy
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from sgmse_nc.audio import list_audio, read_audio
from sgmse_nc.enhance.core import enhance
from sgmse_nc.diffusion.model import ScoreModel
from sgmse_nc.nets.layers import is_channels_last
from sgmse_nc.threads import set_threads


@contextlib.contextmanager
def nchw_group_norm():
    """Within: F.group_norm (which nn.GroupNorm looks up at call time) normalises NHWC inputs in NCHW."""
    group_norm = F.group_norm

    def wrapped(x, *args, **kwargs):
        if x.dim() == 4 and is_channels_last(x):
            return group_norm(x.contiguous(), *args, **kwargs).contiguous(memory_format=torch.channels_last)
        return group_norm(x, *args, **kwargs)
    F.group_norm = wrapped
    try:
        yield
    finally:
        F.group_norm = group_norm


class TwinComparison:
    """Repeats every call of `net` on an NHWC copy and records the relative difference of the outputs."""

    def __init__(self, net: torch.nn.Module):
        self.twin = copy.deepcopy(net)
        self.twin.channels_last = True
        self.diffs: list[float] = []
        self.mean_over_std: list[float] = []
        self._stats = [m.register_forward_hook(self._group_stats) for m in net.modules()
                       if isinstance(m, torch.nn.GroupNorm)]
        net.register_forward_hook(self._compare, with_kwargs=True)

    def _group_stats(self, module, inputs, _):
        x = inputs[0].double()
        groups = x.reshape(x.shape[0], module.num_groups, -1)
        self.mean_over_std.append((groups.mean(-1).abs() / groups.std(-1)).max().item())

    def _compare(self, _, args, kwargs, out):
        for handle in self._stats:  # the statistics of the first call are enough
            handle.remove()
        self._stats = []
        with torch.no_grad():
            other = self.twin(*args, **kwargs)
        self.diffs.append(((other - out).abs().max() / out.abs().max()).item())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--data", required=True, help="folder with noisy/ and noise_ref/ (same names)")
    p.add_argument("--files", type=int, default=2, help="first N files (default %(default)s)")
    p.add_argument("--N", type=int, default=None, help="sampler steps (default: the checkpoint's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--nchw-groupnorm", action="store_true", help="the NHWC copy normalises in NCHW")
    args = p.parse_args(argv)
    set_threads(args.threads)
    model = ScoreModel.load_for_inference(args.ckpt)
    comparison = TwinComparison(model.dnn)
    rows = []
    noisy_dir = Path(args.data) / "noisy"
    with nchw_group_norm() if args.nchw_groupnorm else contextlib.nullcontext():
        for path in list_audio(noisy_dir)[: args.files]:
            ref = read_audio(Path(args.data) / "noise_ref" / path.relative_to(noisy_dir))
            start = len(comparison.diffs)
            enhance(model, [read_audio(path)], [ref] if model.conditional else None,
                    **({"N": args.N} if args.N else {}))
            diffs = comparison.diffs[start:]
            rows.append({"file": path.name, "calls": len(diffs), "max_rel_diff": max(diffs),
                         "median_rel_diff": statistics.median(diffs)})
            print(f"{path.name}: {len(diffs)} calls, NHWC vs NCHW max {max(diffs):.2e}, median "
                  f"{statistics.median(diffs):.2e}")
    print(f"largest |group mean| / group std a GroupNorm saw (first call): {max(comparison.mean_over_std):.2f}"
          + ("; GroupNorm in NCHW inside the NHWC net" if args.nchw_groupnorm else ""))
    return rows


if __name__ == "__main__":
    main()
