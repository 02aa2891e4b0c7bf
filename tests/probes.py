"""Callbacks and a script the training tests run inside real train.py / DDP processes (not a test module)."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch


class RandomnessProbe(pl.Callback):
    """Records, per rank, the diffusion times and CFG-dropout masks the score network sees in training,
    plus the step and EMA state a (resumed) run starts from; appends one JSON line per rank to `path`.
    PROBE_KILL=KILL:5 (or TERM:5) in the environment sends the process that signal after step 5."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.t, self.dropped, self.start = [], [], {}

    def on_train_start(self, trainer, pl_module):
        ema = pl_module.ema
        self.start = {"step": trainer.global_step, "ema_updates": ema.num_updates,
                      "ema_sum": float(sum(s.double().sum() for s in ema.shadow))}

        def record(module, args):
            if module.training:
                _, _, t, cond = args
                self.t += t.tolist()
                z = getattr(cond, "embedding", cond)  # a Condition's global embedding (or a plain tensor)
                if z is not None:
                    self.dropped += (z == 0).all(dim=-1).tolist()

        self.hook = pl_module.dnn.register_forward_pre_hook(record)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        name, _, step = os.environ.get("PROBE_KILL", "").partition(":")
        if name and trainer.global_step == int(step):
            os.kill(os.getpid(), getattr(signal, f"SIG{name}"))

    def on_train_end(self, trainer, pl_module):
        self.hook.remove()
        line = {"rank": trainer.global_rank, "world": trainer.world_size, "t": self.t, "dropped": self.dropped,
                "start": self.start, "end_step": trainer.global_step, "ema_updates": pl_module.ema.num_updates}
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")


class FirstBatchesProbe(pl.Callback):
    """Saves (torch.save to `path`) the backbone's weights at the start of training, the first `count`
    training batches, the diffusion times the score network saw in them, and what validation drew: the
    network's inputs (x_t, t) of every validation-loss batch (loader 0) and the first sampler step of every
    enhanced utterance (loader 1), which depend on the data and the draws only, not on the weights."""

    def __init__(self, path: str, count: int = 4):
        self.path, self.count = Path(path), count
        self.batches, self.t, self.valid = [], [], []
        self.loader, self.batch_size = None, 0  # the validation batch in flight

    def on_train_start(self, trainer, pl_module):
        self.backbone = {k: v.detach().clone() for k, v in pl_module.dnn.state_dict().items()}

        def record(module, args):
            x_t, _, t, _ = args
            if module.training:
                self.t.append(t.detach().clone())
            elif self.loader is not None:  # the first half of a guided (conditional + unconditional) forward
                n = self.batch_size
                self.valid.append({"loader": self.loader, "x_t": x_t[:n].detach().clone(), "t": t[:n].detach().clone()})
                if self.loader == 1:
                    self.loader = None  # later sampler steps depend on the weights

        self.hook = pl_module.dnn.register_forward_pre_hook(record)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if len(self.batches) < self.count:
            self.batches.append({k: v.detach().clone() for k, v in batch.items() if torch.is_tensor(v)})

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self.loader, self.batch_size = dataloader_idx, batch["y"].shape[0]

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.loader = None

    def on_train_end(self, trainer, pl_module):
        self.hook.remove()
        torch.save({"backbone": self.backbone, "batches": self.batches, "t": self.t[:self.count],
                    "valid": self.valid}, self.path)


class EchoModel(pl.LightningModule):
    """A deterministic stand-in "enhancer" (x_hat = 0.7 y) for scoring tests: no sampler randomness."""

    def __init__(self):
        super().__init__()
        from sgmse_nc.spec import Spectrogram

        self.w = torch.nn.Parameter(torch.zeros(()))
        self.spec = Spectrogram()

    @property
    def sample_rate(self) -> int:  # the evaluator asks the module for its rate, as it asks a ScoreModel
        return self.spec.sample_rate

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        return {"x_hat": 0.7 * batch["y"]} if dataloader_idx == 1 else None


def validate_on_devices(root: str, devices: int, out: str) -> None:
    """trainer.validate of EchoModel + the Evaluator over the demo corpus at `root` on `devices` CPU ranks."""
    from sgmse_nc.data.datamodule import SpeechDataModule
    from sgmse_nc.data.paired import PairedFolderDataset
    from sgmse_nc.spec import Spectrogram
    from sgmse_nc.train.evaluator import Evaluator

    valid = PairedFolderDataset(root=root, subset="valid", num_frames=64, spec=Spectrogram())
    dm = SpeechDataModule(valid=valid, batch_size=2, num_workers=0, num_eval_files=len(valid))
    evaluator = Evaluator(metrics=("si_sdr", "estoi"), num_examples=0)
    trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         callbacks=[evaluator])
    metrics = trainer.validate(EchoModel(), datamodule=dm, verbose=False)[0]
    if trainer.is_global_zero:
        Path(out).write_text(json.dumps(metrics))


if __name__ == "__main__":
    validate_on_devices(sys.argv[1], int(sys.argv[2]), sys.argv[3])


class PlantNonFinite(pl.Callback):
    """A data fault: NaN in the clean spectrogram of the training batches at the given optimizer steps (on one
    rank, or every rank when `rank` is None). Appends one JSON line per planted step and rank to `path`: whether
    the step left the weights, the EMA and its update count as they were."""

    def __init__(self, steps, path: str, rank: int | None = None):
        self.steps, self.path, self.rank = set(steps), Path(path), rank
        self.before = None

    def _state(self, pl_module):
        weights = float(sum(p.detach().double().sum() for p in pl_module.parameters()))
        return weights, float(sum(s.double().sum() for s in pl_module.ema.shadow)), pl_module.ema.num_updates

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before = None
        if trainer.global_step in self.steps:
            self.before = self._state(pl_module)
            if self.rank is None or trainer.global_rank == self.rank:
                batch["x"] = batch["x"] * float("nan")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.before is not None:
            after = self._state(pl_module)
            line = {"rank": trainer.global_rank, "step": trainer.global_step - 1,
                    "weights_same": after[0] == self.before[0], "ema_same": after[1] == self.before[1],
                    "ema_updates_same": after[2] == self.before[2]}
            with open(self.path, "a") as f:
                f.write(json.dumps(line) + "\n")


def held_enhance(marker: str, argv: list[str]) -> int:
    """The enhance command (sgmse_nc.enhance.cli.main(argv)), held inside the network's first evaluation after
    its first output file is written: there it writes `marker` and waits (up to 10 minutes) for the test's
    signal. So a signal sent once `marker` exists always lands in the middle of a batch, with some files
    finished and others left, however slowly a loaded machine runs either process."""
    import time

    import sgmse_nc.enhance.folder as folder
    from sgmse_nc.enhance.cli import main

    out = Path(argv[argv.index("--out") + 1])
    marker = Path(marker)
    real_enhance_batch = folder.enhance_batch

    def enhance_batch(model, *args, **kwargs):
        if not marker.exists() and any(not p.name.startswith(".") for p in out.glob("*.wav")):
            def hold(module, inputs):
                handle.remove()
                marker.write_text(f"{os.getpid()}\n")
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    time.sleep(0.05)  # the signal interrupts this wait (SIGINT: KeyboardInterrupt here)

            handle = model.dnn.register_forward_pre_hook(hold)
        return real_enhance_batch(model, *args, **kwargs)

    folder.enhance_batch = enhance_batch
    return main(argv)
