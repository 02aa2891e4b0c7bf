"""Noise encoders E(r) -> z_r, one registry. Each encoder takes the reference as compressed spectrogram
`r` (complex [B, 1, F, T]) and waveform `r_wav` ([B, L], 16 kHz, same normalisation) and returns a global
embedding [B, embed_dim], tokens [B, num_tokens, token_dim], a sgmse_nc.condition.Condition with both, or
None for the unconditional baseline (see encoders.base.Encoder)."""
from __future__ import annotations

from torch import nn

from sgmse_nc.encoders.base import NoEncoder
from sgmse_nc.encoders.cnn import CNNEncoder
from sgmse_nc.encoders.pretrained import CLAPEncoder, PANNsEncoder
from sgmse_nc.encoders.sequence import SequenceEncoder

ENCODERS: dict[str, type[nn.Module]] = {"none": NoEncoder, "cnn": CNNEncoder, "sequence": SequenceEncoder,
                                        "clap": CLAPEncoder, "panns": PANNsEncoder}


def build_encoder(name: str = "none", **kwargs) -> nn.Module:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder '{name}'; choose one of {sorted(ENCODERS)} (conf/encoder/).")
    return ENCODERS[name](**kwargs)
