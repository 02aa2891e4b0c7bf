"""The noise-conditioned SGMSE+ score model as a LightningModule: loss (+ the optional auxiliary noise-class
loss, sgmse_nc.diffusion.noise_class), CFG dropout, EMA, enhancement of whole validation/test utterances (scored by sgmse_nc.train.evaluator.Evaluator). Sub-modules are built from plain
config dicts stored as hyper-parameters, so a checkpoint alone rebuilds the model (`load_for_inference`)."""
from __future__ import annotations

import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sgmse_nc.diffusion.checkpoints import CheckpointError, MissingCheckpoint, read_our_checkpoint
from sgmse_nc.condition import (Condition, as_condition, dropout_keep, null_condition, select_condition,
                                zero_condition)
from sgmse_nc.diffusion.ema import ParameterEMA
from sgmse_nc.diffusion.noise_class import NoiseClassHead, noise_class_options
from sgmse_nc.encoders import build_encoder
from sgmse_nc.errors import OptionError
from sgmse_nc.encoders.pretrained import inference_encoder_config
from sgmse_nc.diffusion.sampling import check_sampler, guided_score, sample, sampler_settings
from sgmse_nc.diffusion.sde import build_sde, data_prediction_loss, score_matching_loss
from sgmse_nc.seeds import seeded_stream, stream_generator
from sgmse_nc.spec import Spectrogram, pad_frames

LOSS_TYPES = {"score_matching": "score", "data_prediction": "data"}  # SGMSE+'s names -> what the net predicts


def _plain(node):
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def backbone_for(backbone: dict, spec: Spectrogram) -> dict:
    """The backbone node with its frequency size taken from the spectrogram (n_fft // 2 + 1) when it names
    none; one that names another size is refused (it could never see this spectrogram)."""
    size = backbone.get("image_size")
    if size is None:
        return {**backbone, "image_size": spec.num_bins}
    if size != spec.num_bins:
        raise OptionError(f"backbone.image_size={size} but the spectrogram (n_fft {spec.n_fft}) has {spec.num_bins} "
                          f"frequency bins; drop backbone.image_size (it follows spec.n_fft) or set it to "
                          f"{spec.num_bins}")
    return backbone


class ScoreModel(pl.LightningModule):
    def __init__(self, backbone: dict, encoder: dict | None = None, sde: dict | None = None,
                 spec: dict | None = None, sampler: dict | None = None, lr: float = 1e-4,
                 ema_decay: float = 0.999, cond_drop_prob: float = 0.0, guidance_scale: float = 1.0,
                 loss_type: str = "score_matching", l1_weight: float = 1e-3, init_seed: int | None = None,
                 ref_seconds: float | None = None, noise_class_loss: dict | None = None):
        super().__init__()
        # Plain containers (Hydra passes DictConfigs): checkpoints then load with torch's weights_only=True.
        backbone, encoder, sde, spec, sampler, noise_class_loss = (
            _plain(c) for c in (backbone, encoder, sde, spec, sampler, noise_class_loss))
        self.save_hyperparameters()
        # Matched runs: the backbone's initial weights come from its own stream, so rows that share a seed
        # start from the same backbone whatever their encoder (conditioning layers are built after the
        # shared ones, see NCSNpp). init_seed None: a seed drawn from torch's global generator.
        init_seed = int(torch.randint(0, 2**62, ())) if init_seed is None else init_seed
        with seeded_stream(init_seed, "encoder"):
            self.encoder = build_encoder(**(encoder or {"name": "none"}))
        self.spec = Spectrogram.from_config(spec)  # holds the sample rate (16 kHz when a checkpoint names none)
        with seeded_stream(init_seed, "backbone"):
            # `dnn` mirrors SGMSE+'s attribute name, so its checkpoints' `dnn.*` keys map one to one.
            self.dnn = instantiate(backbone_for(backbone, self.spec), cond_dim=self.encoder.embed_dim,
                                   token_dim=self.encoder.token_dim)
        for name, value, ok, what in (("lr", lr, lr > 0, "above 0"), ("ema_decay", ema_decay, 0 <= ema_decay < 1, "in [0, 1)"),
                                      ("cond_drop_prob", cond_drop_prob, 0 <= cond_drop_prob <= 1, "in [0, 1]"),
                                      ("guidance_scale", guidance_scale, guidance_scale >= 0, "0 or more"),
                                      ("ref_seconds", 1.0 if ref_seconds is None else ref_seconds,
                                       ref_seconds is None or ref_seconds > 0, "above 0 (or null)")):
            if not (math.isfinite(value) and ok):
                raise OptionError(f"model.{name}={value}: must be a finite number {what}.")
        if loss_type not in LOSS_TYPES:
            raise OptionError(f"model.loss_type={loss_type!r}: choose one of {sorted(LOSS_TYPES)}.")
        # NASE's auxiliary noise-class head on the encoder's embedding: built only when its weight is above 0 (a
        # checkpoint without it loads as before); its own init stream, so the rows' backbones stay matched.
        nc = noise_class_options(noise_class_loss)
        self.noise_class_weight, self.noise_head = nc["weight"], None
        if self.noise_class_weight > 0:
            if not self.conditional:
                raise OptionError("model.noise_class_loss.weight > 0 classifies the encoder's embedding, and "
                                  "encoder=none has none: pick an encoder (e.g. encoder=cnn) or set the weight to 0.")
            with seeded_stream(init_seed, "noise_head"):
                self.noise_head = NoiseClassHead(self.encoder.embed_dim or self.encoder.token_dim, nc["classes"],
                                                 nc["hidden"])
        self.sde = build_sde(**(sde or {}))
        self.sampler_cfg = dict(sampler or {"name": "pc"})   # the settings enhance_spec runs by default
        check_sampler(self.sde, **self.sampler_cfg)           # at build time, not at the first validation
        self.loss_type, self.l1_weight = loss_type, l1_weight
        self.prediction = LOSS_TYPES[loss_type]  # the network outputs the score, or x̂0 (SGMSE+'s SB)
        self.lr, self.cond_drop_prob, self.guidance_scale = lr, cond_drop_prob, guidance_scale
        # The reference length the encoder is trained on (data.train.ref_seconds): enhancement encodes references
        # of this length (sgmse_nc.enhance.core.reference_samples); None in checkpoints written before it was kept.
        self.ref_seconds = None if ref_seconds is None else float(ref_seconds)
        self.ema = ParameterEMA(self, ema_decay)
        self._ema_swap = None
        self._streams: dict[str, torch.Generator] = {}  # training's named generators (seed_streams)
        self._stream_key: tuple[int, int] | None = None   # (seed, rank) of those streams; evaluation's derive from it
        # Set by a guard that dropped this step's gradients (sgmse_nc.train.nonfinite): the weights did not move,
        # so neither does their average.
        self.step_skipped = False

    # ---- the score ------------------------------------------------------------------------------------
    def forward(self, x_t, y, t, cond=None):
        return self.dnn(x_t, y, t, cond)

    def encode(self, r: torch.Tensor, r_wav: torch.Tensor) -> Condition | None:
        return as_condition(self.encoder(r, r_wav))

    def encode_batch(self, batch: dict) -> Condition | None:
        """The batch's condition; examples without an honest reference (`ref_null`) get the null condition."""
        z = self.encode(batch["r"], batch["r_wav"])
        missing = batch.get("ref_null")
        if z is not None and missing is not None and bool(missing.any()):
            z = select_condition(~missing.to(torch.bool), z, null_condition(z))
        return z

    @property
    def conditional(self) -> bool:
        """Whether the score network takes a noise condition (global embedding and/or tokens)."""
        return bool(self.encoder.embed_dim or self.encoder.token_dim)

    @property
    def time_multiple(self) -> int:
        return getattr(self.dnn, "time_multiple", 64)

    @property
    def pad_mode(self) -> str:
        """How the time axis is padded to `time_multiple` (zeros; reflection for SGMSE+'s ncsnpp_v2 / 48k)."""
        return getattr(self.dnn, "pad_mode", "zeros")

    @property
    def sample_rate(self) -> int:
        """The rate the model works at (its spectrogram settings'); enhancement resamples other input to it."""
        return self.spec.sample_rate

    # ---- training ---------------------------------------------------------------------------------------
    def seed_streams(self, seed: int, rank: int = 0, step: int = 0) -> None:
        """Give training its own named generators for diffusion (times, noise) and condition dropout, from
        (seed, rank, step): a row with dropout draws no fewer diffusion numbers than a row without. Validation
        and test batches get theirs from (seed, rank) too (`_evaluation_stream`)."""
        self._streams = {name: stream_generator(seed, name, rank, step, device=self.device)
                         for name in ("diffusion", "dropout")}
        self._stream_key = (int(seed), int(rank))

    def _stream(self, name: str) -> torch.Generator | None:
        """The named generator in training (None, torch's global one, in validation or before seed_streams)."""
        return self._streams.get(name) if self.training else None

    def _evaluation_stream(self, stage: str, loader: int, batch_idx: int) -> torch.Generator | None:
        """The generator of one validation/test batch: (seed, stage, rank, loader, batch), the same at every
        validation, so rows of a study that share a seed validate on the same diffusion times, noise and sampler
        draws whatever their training drew (None, torch's global one, before seed_streams)."""
        if self._stream_key is None:
            return None
        seed, rank = self._stream_key
        return stream_generator(seed, stage, rank, loader, batch_idx, device=self.device)

    def _losses(self, batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """`score`: the diffusion loss; with the noise-class head also `noise_class` (its cross-entropy),
        `labelled` and `correct` (examples with a class target, and those classified right). `generator`
        (evaluation) replaces the training streams for the diffusion draws."""
        x, y = batch["x"], batch["y"]
        z = self.encode_batch(batch)
        keep = dropout_keep(z, self.cond_drop_prob if self.training else 0.0, generator=self._stream("dropout"))
        z_net = z if keep is None else select_condition(keep, z, null_condition(z))
        diffusion = generator if generator is not None else self._stream("diffusion")
        t = self.sde.sample_time(x.shape[0], x.device, generator=diffusion)
        x_t, noise, std = self.sde.perturb(x, y, t, generator=diffusion)
        if self.prediction == "data":
            losses = {"score": data_prediction_loss(self(x_t, y, t, z_net), x, self.spec.to_wav, self.l1_weight)}
        else:
            losses = {"score": score_matching_loss(self(x_t, y, t, z_net), noise, std)}
        if self.noise_head is not None:
            losses.update(self.noise_head.loss(z, self._class_targets(batch, keep)))
        return losses

    def _class_targets(self, batch, keep: torch.Tensor | None) -> torch.Tensor:
        """The head's targets: the batch's class indices, -1 where unknown and where the score network saw the
        null condition instead of this reference (no honest reference, or dropped by CFG): the head learns only
        from the embeddings the score network is conditioned on, never to name a class it was not shown."""
        x = batch["x"]
        targets = self.noise_head.targets(batch.get("noise_class"), x.shape[0], x.device)
        shown = torch.ones_like(targets, dtype=torch.bool) if keep is None else keep
        missing = batch.get("ref_null")
        if missing is not None:
            shown = shown & ~missing.to(device=x.device, dtype=torch.bool)
        return targets.masked_fill(~shown, -1)

    def _total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the optimizer minimises: score loss + weight * noise-class cross-entropy."""
        if "noise_class" not in losses:
            return losses["score"]
        return losses["score"] + self.noise_class_weight * losses["noise_class"]

    def _loss(self, batch) -> torch.Tensor:
        return self._total(self._losses(batch))

    def _log_noise_class(self, stage: str, losses: dict[str, torch.Tensor]) -> None:
        """Cross-entropy and accuracy over the epoch's labelled examples (weighted by their count; summed over
        DDP ranks). NaN for an epoch without a single labelled example."""
        if "noise_class" not in losses:
            return
        count = int(losses["labelled"])
        accuracy = losses["correct"].float() / max(count, 1)
        for name, value in (("loss", losses["noise_class"]), ("acc", accuracy)):
            self.log(f"{stage}_noise_class_{name}", value.detach(), on_step=False, on_epoch=True, sync_dist=True,
                     batch_size=count, add_dataloader_idx=False)

    def training_step(self, batch, batch_idx):
        # A non-finite loss is not raised here: sgmse_nc.train.nonfinite.NonFiniteGuard skips that optimizer step
        # (no weight, no EMA update), counts it and stops the run after K in a row (issue 22).
        losses = self._losses(batch)
        loss = self._total(losses)
        # train_loss / valid_loss stay the score loss, comparable across every row; the optimizer gets the total
        self.log("train_loss", losses["score"], on_step=True, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=batch["x"].shape[0])
        self._log_noise_class("train", losses)
        return loss

    def optimizer_step(self, *args, **kwargs):
        # Lightning calls this once per optimizer step (once per `accumulate_grad_batches` batches): the EMA
        # follows the weights the step has just produced.
        super().optimizer_step(*args, **kwargs)
        if self.step_skipped:
            self.step_skipped = False
        else:
            self.ema.update(self)

    def reset_ema(self) -> None:
        """Restart the average from the current weights (after loading weights from outside, e.g. SGMSE+)."""
        self.ema = ParameterEMA(self, self.ema.decay)

    def init_from_sgmse(self, path) -> None:
        """Warm-start the backbone from a published SGMSE+ checkpoint of any layout (its EMA weights); the
        conditioning layers keep their zero init, so the model starts as exactly that SGMSE+ model. A backbone or
        spectrogram that would compute something else with those weights is refused, naming the settings."""
        from sgmse_nc.diffusion.checkpoints import (load_backbone_weights, load_sgmse_checkpoint,
                                                    sgmse_layout_differences, sgmse_model_config)

        loaded = load_sgmse_checkpoint(path)
        theirs = sgmse_model_config(loaded["hparams"], path)
        differ = sgmse_layout_differences(self.hparams.backbone, theirs["backbone"])
        spec = Spectrogram.from_config(theirs["spec"])
        if spec != self.spec:
            differ.append(f"spec={spec} (yours: {self.spec})")
        if differ:
            layout = loaded["hparams"].get("backbone", "ncsnpp")
            raise CheckpointError(f"{path}: an SGMSE+ '{layout}' checkpoint; this model's settings differ: "
                                  f"{'; '.join(differ)}. Train with backbone={layout} and the checkpoint's spec "
                                  f"(e.g. spec=48k sde=ouve_48k for ncsnpp_48k).")
        load_backbone_weights(self.dnn, loaded["backbone_state"])
        self.reset_ema()

    @classmethod
    def from_sgmse(cls, path, map_location="cpu", use_ema: bool = True) -> "ScoreModel":
        """A published SGMSE+ checkpoint (ncsnpp, ncsnpp_v2, ncsnpp_48k; OUVE or Schrödinger bridge) as our model,
        unconditional, with its own backbone, SDE, spectrogram settings, rate, padding rule and sampler, read
        without sgmse's classes (sgmse_nc.diffusion.checkpoints)."""
        from sgmse_nc.diffusion.checkpoints import load_backbone_weights, load_sgmse_checkpoint, sgmse_model_config

        loaded = load_sgmse_checkpoint(path, use_ema=use_ema)
        model = cls(**sgmse_model_config(loaded["hparams"], path))
        load_backbone_weights(model.dnn, loaded["backbone_state"])
        model.reset_ema()
        return model.to(map_location).eval()

    def configure_optimizers(self):
        return torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=self.lr)

    # ---- EMA weights for validation / test ----------------------------------------------------------------
    def _use_ema(self, on: bool):
        if on and self._ema_swap is None:
            self._ema_swap = self.ema.swapped_in(self)
            self._ema_swap.__enter__()
        elif not on and self._ema_swap is not None:
            self._ema_swap.__exit__(None, None, None)
            self._ema_swap = None

    def on_validation_epoch_start(self):
        self._use_ema(True)

    def on_validation_epoch_end(self):
        self._use_ema(False)

    def on_test_epoch_start(self):
        self._use_ema(True)

    def on_test_epoch_end(self):
        self._use_ema(False)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint):
        if "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])

    # ---- validation: loss on crops (loader 0); whole utterances enhanced for metrics (loader 1, test) -------
    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        generator = self._evaluation_stream("validation", dataloader_idx, batch_idx)
        if dataloader_idx == 0:
            losses = self._losses(batch, generator)
            self.log("valid_loss", losses["score"], on_epoch=True, sync_dist=True, batch_size=batch["x"].shape[0],
                     add_dataloader_idx=False)
            self._log_noise_class("valid", losses)
            return None
        return self._enhance_for_metrics(batch, generator)

    def test_step(self, batch, batch_idx):
        return self._enhance_for_metrics(batch, self._evaluation_stream("test", 0, batch_idx))

    def _enhance_for_metrics(self, batch, generator: torch.Generator | None = None) -> dict:
        """The enhanced spectrogram of a batch of whole utterances (the Evaluator callback scores it)."""
        return {"x_hat": self.enhance_spec(batch["y"], self.encode_batch(batch), generator=generator)}

    # ---- inference --------------------------------------------------------------------------------------
    @torch.no_grad()
    def enhance_spec(self, y: torch.Tensor, cond: Condition | None = None, guidance_scale: float | None = None,
                     generator: torch.Generator | None = None, callback=None, **sampler_overrides) -> torch.Tensor:
        """Sample clean spectrograms for noisy spectrograms y [B, 1, F, T] (any T; padded for the net here).

        `cond` is the encoded reference (encode once per utterance with `encode`, never per sampler step).
        A conditional model given no condition uses the null condition, i.e. the unconditional score.
        `sampler_overrides` (name, N, rho, the sampler's options; None = keep) update the checkpoint's
        sampler settings; `callback` is the sampler's per-step hook.
        """
        frames = y.shape[-1]
        y = pad_frames(y, self.time_multiple, self.pad_mode)
        null, scale = None, 1.0
        if self.conditional:
            if cond is None:
                enc = self.encoder
                cond = zero_condition(y.shape[0], enc.embed_dim, enc.token_dim, enc.num_tokens, device=y.device)
            else:
                cond = as_condition(cond).to(y.device)
                null = null_condition(cond)
                scale = self.guidance_scale if guidance_scale is None else guidance_scale
        settings = sampler_settings(self.sampler_cfg, **sampler_overrides)
        x, _ = sample(guided_score(self, y, cond, null, scale), self.prediction, self.sde, y, generator=generator,
                      callback=callback, **settings)
        return x[..., :frames]

    @classmethod
    def load_for_inference(cls, path, map_location="cpu", use_ema: bool = True,
                           encoder_weights=None) -> "ScoreModel":
        """encoder_weights: where the frozen pre-trained tower's weight file lies now (checked by its sha256)."""
        path = Path(path)
        hint = "For an SGMSE+ checkpoint use sgmse_nc.diffusion.checkpoints.load_sgmse_checkpoint."
        try:
            hparams = read_our_checkpoint(path)["hyper_parameters"]
        except MissingCheckpoint as err:
            raise MissingCheckpoint(f"{err}. Point --ckpt at a .ckpt written by train.py (e.g. "
                                    f"outputs/<run>/checkpoints/last.ckpt).") from None
        except CheckpointError as err:
            raise CheckpointError(f"{err}. {hint}") from None
        # A pre-trained tower comes from its weight file (frozen; relocatable) or from the checkpoint (fine-tuned).
        encoder = inference_encoder_config(hparams.get("encoder"), encoder_weights, path)
        try:  # only weights that do not fit the model their hyper-parameters describe are relabelled
            model = cls.load_from_checkpoint(str(path), map_location=map_location, weights_only=False,
                                             **({} if encoder is None else {"encoder": encoder}))
        except RuntimeError as err:
            if not str(err).startswith("Error(s) in loading state_dict"):
                raise
            first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
            raise CheckpointError(f"{path}: not a sgmse_nc checkpoint (its weights do not fit the model its "
                             f"hyper-parameters describe: {first}). {hint}") from None
        if use_ema:
            model.ema.copy_to(model)
        return model.eval()
