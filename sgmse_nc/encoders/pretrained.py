"""Pre-trained audio towers as noise encoders: LAION-CLAP (HTSAT) and PANNs (CNN14), frozen or fine-tuned.

Path (all torch, on the model's device, differentiable when fine-tuning):
    r_wav [B, L] 16 kHz -> resample to the tower's rate -> CLAP's fill rules (repeat the clip as often as
    it fits, zero-pad the rest; clips over the maximum are cropped, centred, i.e. deterministically)
    -> tower -> (CLAP: its audio projection to the 512-d joint space, L2-normalised)
    -> trainable projection (Linear, SiLU, Linear) -> z_r [B, embed_dim]
  tokens: true also returns the tower's frame-level features (HTSAT: 32 frames x 768, CNN14: frames x 2048),
    average-pooled to num_tokens and projected the same way -> [B, num_tokens, token_dim] (cross-attention)

freeze: true  the tower has no gradients and is not a registered sub-module: it is not in parameters()
              (no optimizer state, no EMA, not in DDP's gradient sync) nor in the state dict (checkpoints
              store only the weight file's sha256, checked when the model is rebuilt). Its embeddings are
              cached per reference waveform (content hash: the same file and crop hit), so a fixed
              reference costs one tower forward in the whole run.
freeze: false the tower is fine-tuned (its weights are then part of every checkpoint). The parameters that
              do not reach the embedding (classifier heads) are frozen, so DDP never sees unused parameters.
lora.rank > 0 the frozen tower gets peft LoRA adapters on the layers `lora.targets` names (encoders/lora.py): the
              tower stays as with freeze: true (not a parameter, not stored, sha256-checked, rebuilt from its weight
              file), the adapters and the projection train and are all a checkpoint holds of the encoder. No cache
              (the embedding changes as the adapters train).

The tower always runs in eval mode (no SpecAugment, batch-norm statistics kept), whatever Lightning calls, and
in float32 whatever the trainer's precision: its log-mel front end clamps the power at 1e-10, which is 0 in
float16 (every empty mel cell becomes -inf, then NaN), and bfloat16 moves the embedding away from the one
enhancement computes in float32. A non-finite embedding is an error, never a cached value.

Resampling to the tower's rate uses a Kaiser-windowed sinc with librosa's `kaiser_best` settings (what the
PANNs release loaded its audio with; embeddings within cosine 0.99998 of laion-clap's file pipeline, which
resamples with librosa >= 0.10's soxr, tests/encoders/test_tower_inputs.py): torchaudio's default (Hann, width 6, rolloff 0.99) leaves imaging above
8 kHz that the log-mel front end (no top_db) reads as -54 to -81 dB instead of the -100 dB floor.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from sgmse_nc.condition import Condition
from sgmse_nc.encoders.base import Encoder
from sgmse_nc.encoders.laion import (WeightsError, audio_config, build_tower, check_front_end, clap_projection,
                                     file_sha256, load_strict, read_weights, split_clap_state)
from sgmse_nc.encoders.lora import add_lora, lora_settings
from sgmse_nc.errors import OptionError, UserError

INPUT_RATE = 16000
# librosa's `kaiser_best` (resampy) as torchaudio settings: 16 -> 48 / 32 kHz as the towers were fed.
KAISER_BEST = {"lowpass_filter_width": 64, "rolloff": 0.9475, "resampling_method": "sinc_interp_kaiser",
               "beta": 14.769656459379492}
FRAME_REPEAT = 32  # laion-clap's towers interpolate their frame features by repeating each frame 32 times
# Parameters outside the embedding's graph (clip-wise classifier heads): frozen, or DDP reports them unused.
HEADS = {"HTSAT": ("head.", "tscam_conv."), "PANN": ("fc_audioset.",)}


def fill_clip(wav: torch.Tensor, min_samples: int, max_samples: int) -> torch.Tensor:
    """CLAP's `repeatpad` for short clips (whole repeats, then zeros) and a centred crop for long ones."""
    length = wav.shape[-1]
    if length > max_samples:
        start = (length - max_samples) // 2
        return wav[..., start:start + max_samples]
    if length < min_samples:
        wav = wav.repeat(1, min_samples // length)
        return F.pad(wav, (0, min_samples - wav.shape[-1]))
    return wav


class EmbeddingError(UserError, ValueError):
    """A pre-trained tower returned a non-finite embedding (the reference holds NaN/inf, or the tower does); the
    message names the reference and the weight file to check."""


def resample_to(wav: torch.Tensor, rate: int) -> torch.Tensor:
    """16 kHz -> the tower's rate with librosa's kaiser_best settings (float32)."""
    return torchaudio.functional.resample(wav.float(), INPUT_RATE, rate, **KAISER_BEST)


class PretrainedAudioEncoder(Encoder):
    """A laion-clap audio tower + trainable projection. Subclasses fix the defaults (clap, panns).

    tower: a laion-clap model config name (HTSAT-tiny, HTSAT-base, HTSAT-large, PANN-14, ...).
    weights: local checkpoint file (required unless random_init, which only tests/benchmarks use, or a
      fine-tuned checkpoint whose state dict restores the tower).
    joint_projection: the checkpoint carries CLAP's audio projection (768 -> 512 -> 512); use it.
    audio_cfg: overrides of the tower's audio config (e.g. sample_rate / hop_size for the PANNs release).
    min_seconds / max_seconds: fill / crop rules at the tower's input.
    cache_size: frozen towers only; the number of cached reference embeddings (0 = no cache).
    tokens / num_tokens / token_dim: also emit frame-level tokens; embed_dim 0 then means tokens only.
    lora: {rank, alpha, targets}: LoRA adapters on the frozen tower (rank 0 or None: none; encoders/lora.py).
    """

    def __init__(self, tower: str, weights: str | None = None, embed_dim: int = 512, hidden_dim: int = 512,
                 freeze: bool = True, joint_projection: bool = True, audio_cfg: dict | None = None,
                 min_seconds: float = 10.0, max_seconds: float = 10.0, cache_size: int = 20000,
                 random_init: bool = False, tokens: bool = False, num_tokens: int = 16, token_dim: int = 256,
                 lora: dict | None = None):
        super().__init__()
        cfg = audio_config(tower, **(audio_cfg or {}))
        rank, alpha, targets = lora_settings(lora)
        if rank and not freeze:
            raise OptionError(f"encoder.lora.rank={rank} with encoder.freeze=false: LoRA adapts the frozen tower; "
                              f"set encoder.freeze=true (or encoder.lora.rank=0 to fine-tune the whole tower).")
        self.tower_name, self.sample_rate, self.frozen = tower, int(cfg.sample_rate), bool(freeze)
        self.min_samples, self.max_samples = int(min_seconds * cfg.sample_rate), int(max_seconds * cfg.sample_rate)
        self.embed_dim = embed_dim
        self.token_dim, self.num_tokens = (token_dim, num_tokens) if tokens else (0, 0)
        if not embed_dim and not tokens:
            raise ValueError(f"encoder {tower}: embed_dim 0 needs tokens: true (or the encoder gives nothing)")
        if weights is None and not random_init:
            raise WeightsError(f"encoder {tower}: set encoder.weights to a local checkpoint file (nothing is "
                               f"downloaded at run time; see the README's pre-trained encoders section).")
        # Read and check the file before building the tower (seconds on a CPU): bad paths fail fast.
        states = self._read(weights, joint_projection) if weights else None
        if states:
            check_front_end(states[0], cfg, weights)  # filters for another rate would load silently
        net = build_tower(cfg)
        head = clap_projection(cfg.embed_dim) if joint_projection else None
        if states:
            load_strict(net, states[0], weights, "audio tower")
            if head is not None:
                load_strict(head, states[1], weights, "audio projection")
        sha = file_sha256(Path(weights)) if weights else None
        self.weights = str(weights) if weights else None
        # sha256 of the weight file the tower came from (zeros: random init); checked when a checkpoint loads.
        self.register_buffer("weights_sha256", torch.tensor(list(bytes.fromhex(sha)) if sha else [0] * 32,
                                                            dtype=torch.uint8))
        towers = nn.ModuleList([net] + ([head] if head is not None else []))
        for name, p in towers.named_parameters():
            if freeze or name.removeprefix("0.").startswith(HEADS[cfg.model_type]):
                p.requires_grad_(False)
        # The adapters are sub-modules of the encoder, the tower they sit in is not (with freeze: true).
        self.adapters = add_lora(net, rank, alpha, targets) if rank else None
        towers.eval()
        if freeze:
            self._hidden = (towers,)  # a tuple: not a sub-module, so not in parameters() / state_dict()
        else:
            self.towers = towers
        # Fine-tuned or adapted: the tower's output depends on trained weights (gradients, no cache).
        self.tower_trains = not freeze or bool(rank)
        out_dim = 512 if joint_projection else cfg.embed_dim
        mlp = lambda d_in, d_out: nn.Sequential(nn.Linear(d_in, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, d_out))
        self.proj = mlp(out_dim, embed_dim) if embed_dim else None
        self.token_proj = mlp(cfg.embed_dim, token_dim) if tokens else None  # frames: the tower's width
        self.cache_size = 0 if self.tower_trains else cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    # ---- weights ------------------------------------------------------------------------------------
    @staticmethod
    def _read(weights, joint_projection: bool):
        """(tower state, CLAP projection state or None) from the weight file, with clear errors."""
        path = Path(weights)
        state = read_weights(path, "LAION-CLAP" if joint_projection else "PANNs / LAION-CLAP")
        tower_state, head_state = split_clap_state(state, path, allow_bare=not joint_projection)
        if joint_projection and head_state is None:
            raise WeightsError(f"{path}: no `audio_projection.*` weights (CLAP's joint projection); for a bare "
                               f"tower set encoder.joint_projection=false")
        return tower_state, head_state

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "weights_sha256")
        if self.frozen and stored is not None and stored.any() and self.weights_sha256.any() \
                and not torch.equal(stored.cpu(), self.weights_sha256.cpu()):
            raise WeightsError(f"{self.weights}: not the {self.tower_name} weight file this model was trained with "
                               f"(sha256 {self.weights_sha256.cpu().numpy().tobytes().hex()[:12]}… vs "
                               f"{stored.cpu().numpy().tobytes().hex()[:12]}… in the checkpoint); point "
                               f"encoder.weights (enhance: --encoder-weights) at the original file.")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def tower_modules(self) -> nn.ModuleList:
        return self._hidden[0] if self.frozen else self.towers

    def _apply(self, fn, recurse=True):  # .to(device) / .float() reach the hidden frozen tower (and adapters) too
        super()._apply(fn, recurse)
        if self.frozen:
            self._hidden[0]._apply(fn, recurse)
            self._cache.clear()
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self.tower_modules.eval()  # never SpecAugment or batch-norm updates, frozen or fine-tuned
        return self

    # ---- forward -----------------------------------------------------------------------------------
    def tower_embedding(self, r_wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[B, L] 16 kHz waveforms -> the tower's embedding [B, 512 (CLAP) or 2048 (PANNs)] and, with tokens,
        its frames pooled to [B, num_tokens, width]. Always float32 (autocast is off inside)."""
        modules = self.tower_modules
        with torch.autocast(r_wav.device.type, enabled=False):
            x = fill_clip(resample_to(r_wav, self.sample_rate), self.min_samples, self.max_samples)
            out = modules[0]({"waveform": x}, device=x.device)
            z = out["embedding"]
            if len(modules) > 1:
                z = F.normalize(modules[1](z), dim=-1)
            if not self.token_dim:
                return z, None
            frames = out["fine_grained_embedding"][:, ::FRAME_REPEAT]  # both towers repeat each frame 32 times
            return z, F.adaptive_avg_pool1d(frames.transpose(1, 2), self.num_tokens).transpose(1, 2)

    def _check_finite(self, r_wav: torch.Tensor, z: torch.Tensor, frames: torch.Tensor | None, keys=None,
                      rows=None) -> None:
        """keys / rows: the content hashes and batch rows of r_wav's rows (a cache miss is a subset)."""
        bad = ~torch.isfinite(z).all(-1)
        if frames is not None:
            bad |= ~torch.isfinite(frames).flatten(1).all(-1)
        if bad.any():
            i = int(bad.nonzero()[0])
            wav_ok = bool(torch.isfinite(r_wav[i]).all())
            raise EmbeddingError(
                f"encoder {self.tower_name}: non-finite embedding for reference {rows[i] if rows else i} of the batch "
                f"({'its waveform is finite' if wav_ok else 'its waveform holds NaN/inf'}"
                f"{f'; content sha1 {keys[i]}' if keys else ''}); not cached. Check that reference file "
                f"(a NaN/inf sample) and the weight file {self.weights or '(random init)'}.")

    def _cached_embedding(self, r_wav: torch.Tensor):
        keys = [hashlib.sha1(w.numpy().tobytes()).hexdigest() for w in r_wav.detach().float().cpu()]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))  # unique, in batch order
        if missing:
            rows = [keys.index(k) for k in missing]
            with torch.no_grad():
                z, frames = self.tower_embedding(r_wav[rows])
            self._check_finite(r_wav[rows], z, frames, missing, rows)  # a NaN never enters the cache
            self._cache.update((k, (z[i], None if frames is None else frames[i])) for i, k in enumerate(missing))
        for k in keys:
            self._cache.move_to_end(k)  # least recently used go first
        hits = [self._cache[k] for k in keys]
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        with torch.autocast(r_wav.device.type, enabled=False):  # stacking float32 entries under autocast fails
            return (torch.stack([h[0] for h in hits]),
                    None if hits[0][1] is None else torch.stack([h[1] for h in hits]))

    def forward(self, r: torch.Tensor, r_wav: torch.Tensor):
        if self.tower_trains:
            z, frames = self.tower_embedding(r_wav)
        elif self.cache_size:
            z, frames = self._cached_embedding(r_wav)
        else:
            with torch.no_grad():
                z, frames = self.tower_embedding(r_wav)
        if not self.cache_size:
            self._check_finite(r_wav, z.detach(), None if frames is None else frames.detach())
        z = None if self.proj is None else self.proj(z)
        tokens = None if self.token_proj is None else self.token_proj(frames)
        return z if tokens is None else Condition(embedding=z, tokens=tokens)


class CLAPEncoder(PretrainedAudioEncoder):
    """LAION-CLAP audio tower (HTSAT-tiny by default; 630k-audioset-best.pt format), 10 s clips at 48 kHz."""

    def __init__(self, tower: str = "HTSAT-tiny", **kwargs):
        super().__init__(tower=tower, **kwargs)


PANNS_RELEASE = {"sample_rate": 32000, "hop_size": 320}  # Cnn14_mAP=0.431.pth; clips of 1 to 10 s


class PANNsEncoder(PretrainedAudioEncoder):
    """PANNs CNN14, 2048-d: the original release (Cnn14_mAP=0.431.pth: 32 kHz, hop 320, clips of 1 to 10 s) or,
    with joint_projection, a LAION-CLAP checkpoint with a PANN audio branch (laion-clap's PANN-14 settings:
    48 kHz, hop 480, 10 s clips). audio_cfg / min_seconds override those defaults; the file's mel filters
    must match the rate either way (else a WeightsError names the settings that fit)."""

    def __init__(self, tower: str = "PANN-14", joint_projection: bool = False, audio_cfg: dict | None = None,
                 min_seconds: float | None = None, **kwargs):
        defaults = ({}, 10.0) if joint_projection else (PANNS_RELEASE, 1.0)
        super().__init__(tower=tower, joint_projection=joint_projection, audio_cfg={**defaults[0], **(audio_cfg or {})},
                         min_seconds=defaults[1] if min_seconds is None else min_seconds, **kwargs)


def inference_encoder_config(encoder: dict | None, weights=None, checkpoint=None) -> dict | None:
    """The encoder config to rebuild a trained model with, or None to keep the checkpoint's.

    A fine-tuned tower comes back from the checkpoint's state dict (no weight file needed); a frozen one (with or
    without LoRA adapters) from its weight file, which `weights` may relocate (its sha256 must still match the one
    the model trained with). A weight file that is not there is a WeightsError naming `checkpoint` and the fix.
    """
    if not encoder or encoder.get("name") not in ("clap", "panns"):
        return None
    if not encoder.get("freeze", True):
        return {**encoder, "weights": None, "random_init": True}
    path = weights or encoder.get("weights")
    if path and not Path(path).is_file():
        stored = "its LoRA adapters and projection" if lora_settings(encoder.get("lora"))[0] else "its projection"
        raise WeightsError(f"{path}: the {encoder['name']} tower weights of {checkpoint or 'this checkpoint'} are not "
                           f"found (the checkpoint holds {stored}, not the frozen tower). Point at the weight file "
                           f"it was trained with: sgmse-enhance --encoder-weights FILE (Python: encoder_weights=FILE).")
    return {**encoder, "weights": str(weights)} if weights else None
