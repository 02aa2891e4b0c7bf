"""Helpers shared by several test modules (test modules never import each other)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout: conf/, bench/, the root scripts

# ---- a synthetic stand-in of the official 48 kHz VoiceBank-DEMAND release ------------------------------

SOURCE_RATE = 48000
# id -> (noise label, SNR dB); p226/p287 are the validation speakers, p232/p257 the official test speakers
TRAIN_LOG = {"p226_001": ("cafe", 5.0), "p226_002": ("babble", 10.0), "p250_001": ("babble", 15.0),
             "p250_002": ("cafe", 0.0), "p250_003": ("white", 5.0), "p287_001": ("cafe", 0.0)}
TEST_LOG = {"p232_001": ("bus", 2.5), "p232_002": ("cafe", 7.5), "p257_001": ("bus", 12.5),
            "p257_002": ("cafe", 17.5)}


def synthetic_pair(index: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """A tone with an envelope (clean) and clean + white noise (noisy), distinct per index."""
    rng = np.random.default_rng(index)
    t = np.arange(int(seconds * SOURCE_RATE)) / SOURCE_RATE
    clean = 0.2 * np.sin(2 * np.pi * (150 + 20 * index) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    noisy = clean + 0.05 * rng.standard_normal(t.size)
    return clean.astype(np.float32), noisy.astype(np.float32)


def make_release(src: Path, clean_train="clean_trainset_28spk_wav", noisy_train="noisy_trainset_28spk_wav",
                 clean_test="clean_testset_wav", noisy_test="noisy_testset_wav", log_dir="logfiles",
                 suffix=".wav") -> Path:
    """The official folder layout at 48 kHz (0.5–0.9 s signals) with its log files and the unrelated ones."""
    index = 0
    for log, clean_dir, noisy_dir, log_name in ((TRAIN_LOG, clean_train, noisy_train, "log_trainset_28spk.txt"),
                                                (TEST_LOG, clean_test, noisy_test, "log_testset.txt")):
        for utt in log:
            clean, noisy = synthetic_pair(index, 0.5 + 0.1 * (index % 5))
            for folder, wav in ((clean_dir, clean), (noisy_dir, noisy)):
                (src / folder).mkdir(parents=True, exist_ok=True)
                sf.write(src / folder / f"{utt}{suffix}", wav, SOURCE_RATE, subtype="PCM_16")
            index += 1
        (src / log_dir).mkdir(parents=True, exist_ok=True)
        (src / log_dir / log_name).write_text("".join(f"{u} {lab} {snr:.6e}\n" for u, (lab, snr) in log.items()))
    # the release also ships these; they must not be mistaken for the 28-speaker logs
    (src / log_dir / "log_trainset_56spk.txt").write_text("p234_001 cafe 5.000000e+00\n")
    (src / log_dir / "log_readme.txt").write_text("noise type and SNR per utterance\n")
    return src


# ---- score networks -------------------------------------------------------------------------------------

class TinyScoreNet(torch.nn.Module):
    """A minimal score network with the backbone's call signature, for sampler/guidance tests."""

    def __init__(self, cond_dim: int = 0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))
        self.cond = torch.nn.Linear(cond_dim, 1) if cond_dim else None

    def forward(self, x, y, t, cond=None):
        s = -(x - y) * self.w / t.view(-1, 1, 1, 1)
        if self.cond is not None:
            s = s * (1 + self.cond(cond).view(-1, 1, 1, 1))
        return s


# ---- pre-trained towers: weight files in the published layouts, random weights ---------------------------

def clap_checkpoint(path: Path, seed: int = 0) -> tuple[Path, torch.nn.Module, torch.nn.Module]:
    """A 630k-audioset-best.pt-like file: {"state_dict": {module.audio_branch.*, module.audio_projection.*,
    text keys}} from laion-clap's HTSAT class and CLAP's projection layout, random weights."""
    from sgmse_nc.encoders.laion import audio_config, build_tower, clap_projection

    torch.manual_seed(seed)
    tower, head = build_tower(audio_config("HTSAT-tiny")).eval(), clap_projection(768).eval()
    state = {**{f"module.audio_branch.{k}": v for k, v in tower.state_dict().items()},
             **{f"module.audio_projection.{k}": v for k, v in head.state_dict().items()},
             "module.text_branch.embeddings.weight": torch.zeros(3, 2), "module.logit_scale_a": torch.ones(())}
    torch.save({"epoch": 45, "state_dict": state}, path)
    return path, tower, head


# ---- experiments whose encoder needs a weight file -------------------------------------------------------

def random_tower_overrides(cfg) -> list[str]:
    """Pre-trained towers (clap, panns) build with random weights in tests: no weight file exists here."""
    return ["encoder.weights=null", "+encoder.random_init=true"] if cfg.encoder.name in ("clap", "panns") else []


def noise_class_overrides(cfg) -> list[str]:
    """A row with the noise-class head, built without reading its data (sgmse-train takes the classes from
    data.train): two stand-in class names."""
    node = cfg.model.get("noise_class_loss") or {}
    return ["model.noise_class_loss.classes=[white,pink]"] if node.get("weight") and node.get("classes") is None \
        else []


# ---- the reference implementation (sp-uhh/sgmse), exported outside the repository, never committed -------

def sgmse_reference_backbones():
    """sp-uhh/sgmse's `sgmse.backbones` from its export (bench/sgmse_reference.py: $SGMSE_REF, default
    /tmp/sgmse_ref); the test is skipped, saying how to get it, when the export is absent:
        git -C <sgmse mirror> archive HEAD | tar -x -C /tmp/sgmse_ref"""
    import pytest

    from bench.sgmse_reference import REFERENCE, available, import_reference

    if not available():
        pytest.skip(f"the reference sp-uhh/sgmse is not at {REFERENCE} (export it there, or set SGMSE_REF)")
    return import_reference()


# ---- the enhance command in this process -----------------------------------------------------------------

def enhance_command(*args, check=None):
    """sgmse_nc.enhance.cli.main(argv) on the CPU with stdout/stderr captured, as a CompletedProcess."""
    import contextlib
    import io
    import subprocess

    from sgmse_nc.enhance.cli import main

    argv = ["--device", "cpu", *map(str, args)]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = main(argv)
        except SystemExit as exit_:  # argparse
            status = exit_.code
    out = subprocess.CompletedProcess(argv, status, stdout.getvalue(), stderr.getvalue())
    if check is not None:
        assert out.returncode == check, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def error_line_of(out) -> str:
    """The one `error:` line of a command's stderr (progress bars and logging may print others)."""
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    return lines[0]


def write_noise_wav(path: Path, seconds: float, rate: int = 16000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate)), rate, subtype="PCM_16")
    return path


# ---- stand-ins of every corpus the data configs read -------------------------------------------------------

def synthetic_corpora(data: Path) -> None:
    """Stand-ins for every corpus the experiments read: VoiceBank-DEMAND layout and two noise pools."""
    from sgmse_nc.audio import write_audio
    from sgmse_nc.data.prepare.demo import ensure_demo_corpus

    # two noise types over six utterances: the honest reference strategies find another utterance of the label
    ensure_demo_corpus(data / "vbdmd", num_train=6, num_valid=2, num_test=2, seconds=[1.0, 1.5],
                       noise_types=["white", "pink"])
    ensure_demo_corpus(data / "ears_wham", num_train=6, num_valid=2, num_test=2, seconds=[1.0, 1.5],
                       noise_types=["white", "pink"], sample_rate=48000)  # the 48 kHz rows' corpus (same layout)
    rng = np.random.default_rng(0)
    for path in ("noise/DEMAND/DKITCHEN/ch01.wav", "noise/DEMAND/DKITCHEN/ch02.wav", "noise/DEMAND/STRAFFIC/ch01.wav",
                 "noise/DEMAND/STRAFFIC/ch02.wav", "noise/wham_noise/tr/a.wav"):
        write_audio(data / path, 0.1 * rng.standard_normal(8 * 16000).astype(np.float32), 16000)
