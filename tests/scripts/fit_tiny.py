"""A few optimizer steps of a tiny model on random batches with a real Lightning Trainer, optionally DDP.

    python tests/scripts/fit_tiny.py OUT_DIR DEVICES OVERRIDE...   (Hydra overrides of conf/train.yaml + debug=tiny)

DDP runs Lightning's own launcher (this script is re-executed per rank) with gloo on CPU and
find_unused_parameters=false, as conf/trainer/ddp.yaml does: a parameter left out of the graph fails the run.
Rank 0 writes OUT_DIR/result.json (steps done and, per rank, a checksum of the trainable parameters and one of the
encoder's: equal on every rank after DDP's gradient averaging) and OUT_DIR/last.ckpt. `main` also serves in-process tests.
"""
import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy
from torch.utils.data import DataLoader, Dataset

from sgmse_nc.config import build_model_from_config


class RandomExamples(Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        c = lambda *s: torch.randn(*s, dtype=torch.complex64, generator=g) * 0.1
        x = c(1, 256, 32)
        return {"x": x, "y": x + c(1, 256, 32), "r": c(1, 256, 16), "r_wav": 0.1 * torch.randn(1920, generator=g),
                "norm": torch.tensor(1.0)}


def main(out_dir: str, devices: str, *overrides: str):
    torch.set_num_threads(1)
    pl.seed_everything(0)
    model = build_model_from_config(["debug=tiny", *overrides])  # conf/debug/tiny.yaml: the tiny net
    ddp = int(devices) > 1
    trainer = pl.Trainer(accelerator="cpu", devices=int(devices), max_steps=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0,
                         strategy=DDPStrategy(find_unused_parameters=False, process_group_backend="gloo") if ddp
                         else "auto")
    trainer.fit(model, DataLoader(RandomExamples(), batch_size=2))
    trainer.save_checkpoint(Path(out_dir, "last.ckpt"))
    # [all trainable parameters, the encoder's]: the second alone shows that the encoder's (e.g. LoRA adapters)
    # were synced too, whatever the much larger score network's sum does
    trainable = [(n, p.detach().double()) for n, p in model.named_parameters() if p.requires_grad]
    checksum = torch.tensor([sum(float(p.sum()) for _, p in trainable),
                             sum(float(p.sum()) for n, p in trainable if n.startswith("encoder."))], dtype=torch.float64)
    if ddp:
        gathered = [torch.zeros(2, dtype=torch.float64) for _ in range(trainer.world_size)]
        torch.distributed.all_gather(gathered, checksum)
    else:
        gathered = [checksum]
    if trainer.global_rank == 0:
        Path(out_dir, "result.json").write_text(json.dumps({"steps": trainer.global_step,
                                                            "checksums": [float(c[0]) for c in gathered],
                                                            "encoder_checksums": [float(c[1]) for c in gathered]}))
    return model


if __name__ == "__main__":
    main(*sys.argv[1:])
