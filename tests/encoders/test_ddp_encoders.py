"""Real 2-process CPU DDP (gloo, find_unused_parameters=false) for the encoders whose graphs are the riskiest:
CLAP fine-tuned through its tower (the original study's "unused parameters" failure), CLAP with LoRA adapters
on its frozen tower, and the token encoder with cross-attention. Each rank builds its model; a parameter outside
the loss's graph fails the run."""
import json
import os
import subprocess
import sys

import pytest
import torch

from sgmse_nc.diffusion.model import ScoreModel
from sgmse_nc.encoders.laion import audio_config, build_tower, clap_projection
from tests.helpers import REPO_ROOT, clap_checkpoint

ROOT = REPO_ROOT
SCRIPT = ROOT / "tests" / "scripts" / "fit_tiny.py"


def fit(tmp_path, devices, *overrides):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), str(devices), *overrides], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((tmp_path / "result.json").read_text())


def check(result):
    assert result["steps"] == 2
    for part in ("encoder_checksums", "checksums"):  # the encoder's trainable parameters, then all
        a, b = result[part]
        assert a == pytest.approx(b, rel=1e-9, abs=1e-9), part  # gradients were averaged: the ranks agree


@pytest.mark.slow  # two processes each build HTSAT-tiny (~1 min on 2 busy cores)
def test_ddp_clap_finetune(tmp_path):
    torch.manual_seed(0)
    tower, head = build_tower(audio_config("HTSAT-tiny")), clap_projection(768)
    state = {**{f"audio_branch.{k}": v for k, v in tower.state_dict().items()},
             **{f"audio_projection.{k}": v for k, v in head.state_dict().items()}}
    torch.save({"state_dict": state}, tmp_path / "clap.pt")
    check(fit(tmp_path, 2, "encoder=clap", f"encoder.weights={tmp_path / 'clap.pt'}", "encoder.freeze=false",
              "encoder.embed_dim=16", "model.cond_drop_prob=0.5"))


@pytest.mark.slow  # two processes each build HTSAT-tiny with adapters, then one reload (~1-2 min on 2 busy cores)
def test_ddp_clap_lora_adapters_synced_and_checkpoint_loads(tmp_path):
    weights, _, _ = clap_checkpoint(tmp_path / "clap.pt")
    check(fit(tmp_path, 2, "encoder=clap", f"encoder.weights={weights}", "encoder.lora.rank=4", "encoder.embed_dim=16",
              "encoder.min_seconds=2", "encoder.max_seconds=2", "model.cond_drop_prob=0.5"))
    model = ScoreModel.load_for_inference(tmp_path / "last.ckpt", use_ema=False)
    b = [p for n, p in model.encoder.adapters.named_parameters() if ".B." in n]
    assert len(b) == 24 and all(p.any() for p in b)  # every adapter trained (B starts at zero), and came back


@pytest.mark.slow  # ~30 s: two processes
def test_ddp_sequence_cross_attention(tmp_path):
    check(fit(tmp_path, 2, "encoder=sequence", "encoder.token_dim=32", "backbone.xattn_resolutions=[32]",
              "model.cond_drop_prob=0.5"))
