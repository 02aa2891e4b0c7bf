"""Helpers shared by several test modules (test modules never import each other)."""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
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
                 suffix=".wav", train_log=TRAIN_LOG) -> Path:
    """The official folder layout at 48 kHz (0.5–0.9 s signals) with its log files and the unrelated ones."""
    index = 0
    for log, clean_dir, noisy_dir, log_name in ((train_log, clean_train, noisy_train, "log_trainset_28spk.txt"),
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


# ---- stand-ins of the ESC-50 and EARS-WHAM releases --------------------------------------------------------

ESC50_RATE = 44100
ESC50_CATEGORIES = ("dog", "rain", "siren")


def make_esc50(root, rng, burst=(1.0, 1.5), looped=False):
    """ESC-50 layout: audio/<fold>-<src>-A-<target>.wav (5 s, 44.1 kHz) mostly silent around a burst of
    unique noise (1-1.5 s by default), and meta/esc50.csv. looped: each clip repeats one 0.3 s event
    instead (a dog barking in a loop, as many real clips do)."""
    from sgmse_nc.audio import write_audio

    rows = []
    for target, category in enumerate(ESC50_CATEGORIES):
        for fold in (1, 2, 3):
            name = f"{fold}-{100 + 10 * target + fold}-A-{target}.wav"
            clip = np.zeros(5 * ESC50_RATE)
            length = int(rng.uniform(*burst) * ESC50_RATE)
            start = int(rng.integers(0, 5 * ESC50_RATE - length))
            clip[start:start + length] = rng.uniform(0.05, 0.5) * rng.standard_normal(length)
            if looped:
                event = rng.standard_normal(int(0.3 * ESC50_RATE)) * np.hanning(int(0.3 * ESC50_RATE))
                clip = 0.3 * np.tile(event, 17)[:5 * ESC50_RATE]
            write_audio(root / "audio" / name, clip, ESC50_RATE)
            rows.append({"filename": name, "fold": fold, "target": target, "category": category, "esc10": "False",
                         "src_file": 100 + 10 * target + fold, "take": "A"})
    (root / "meta").mkdir(parents=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


EARS_RATE = 48000
EARS_SPEAKERS = {"train": ["p001", "p002"], "valid": ["p100"], "test": ["p102"]}


def make_ears_wham_release(root, rng):
    """EARS-WHAM with two utterances per speaker (0.6 s) mixed from 4 s stereo WHAM! recordings."""
    src, noise_dir = root / "EARS-WHAM", root / "WHAM48kHz" / "high_res_wham" / "audio"
    noise_dir.mkdir(parents=True)
    recordings = {}
    for k in range(3):
        name = f"rec{k}"
        data = rng.standard_normal((4 * EARS_RATE, 2)) * 0.1 * (1 + np.arange(2))  # two channels, distinct levels
        sf.write(noise_dir / f"{name}.wav", data, EARS_RATE, subtype="FLOAT")
        recordings[name] = data
    mixed = {}
    for subset, speakers in EARS_SPEAKERS.items():
        rows, utt = [], 0
        for speaker in speakers:
            for _ in range(2):
                n = int(0.6 * EARS_RATE)
                t = np.arange(n) / EARS_RATE
                clean = 0.3 * np.sin(2 * np.pi * (150 + 10 * utt) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
                name = f"rec{utt % 3}"
                start = int(rng.integers(EARS_RATE, 2 * EARS_RATE))  # the recording has room before and after
                channel = int(rng.integers(0, 2))
                noise = recordings[name][start:start + n, channel]
                snr = round(float(rng.uniform(0, 10)), 1)
                for kind, wav, file in (("clean", clean, f"{utt:05}.wav"),
                                        ("noisy", clean + noise, f"{utt:05}_{snr:.1f}dB.wav")):
                    (src / subset / kind / speaker).mkdir(parents=True, exist_ok=True)
                    sf.write(src / subset / kind / speaker / file, wav, EARS_RATE, subtype="FLOAT")
                rows.append({"id": utt, "speaker": speaker, "speech_file": f"regular_{utt}", "speech_start": 0,
                             "speech_end": -1, "noise_file": name, "noise_start": start, "noise_end": start + n,
                             "snr_dB": snr})
                mixed[(subset, f"{speaker}_{utt:05}")] = (name, start, start + n)
                utt += 1
        with open(src / f"{subset}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return src, noise_dir, mixed


# ---- fenced blocks of the README and the docs it links (the commands the tests run or check) ---------------

@dataclass(frozen=True)
class FencedBlock:
    """One ```-fenced block: its file, the line of its first content line, its language (after the fence),
    its text, the heading it sits under and the paragraph right above it (what the block needs is named there)."""
    path: Path
    line: int
    lang: str
    text: str
    section: str
    above: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def fenced_blocks(path: Path, lang: str | None = None) -> list[FencedBlock]:
    """The fenced blocks of a Markdown file in order (only those in `lang`, "" for a bare fence, when given)."""
    lines = Path(path).read_text().splitlines()
    blocks, section, i = [], "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#") and line.lstrip("#").startswith(" "):
            section = line.lstrip("#").strip()
        if not line.startswith("```"):
            i += 1
            continue
        end = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("```"))
        above, k = [], i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        while k >= 0 and lines[k].strip() and not lines[k].startswith(("```", "#")):  # the paragraph above
            above.insert(0, lines[k])
            k -= 1
        block = FencedBlock(Path(path), i + 2, line[3:].strip(), "\n".join(lines[i + 1:end]) + "\n", section,
                            "\n".join(above))
        if lang is None or block.lang == lang:
            blocks.append(block)
        i = end + 1
    return blocks


def documentation_files() -> list[Path]:
    """README.md and every docs/*.md it links, in the README's order."""
    readme = REPO_ROOT / "README.md"
    linked = dict.fromkeys(re.findall(r"\]\((docs/[\w.-]+\.md)", readme.read_text()))
    return [readme, *(REPO_ROOT / name for name in linked)]


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

def synthetic_corpora(data: Path, corpora=("vbdmd", "ears_wham", "noise")) -> None:
    """Stand-ins for every corpus the experiments read: VoiceBank-DEMAND layout and two noise pools."""
    from sgmse_nc.audio import write_audio
    from sgmse_nc.data.prepare.demo import ensure_demo_corpus

    # two noise types over six utterances: the honest reference strategies find another utterance of the label
    if "vbdmd" in corpora:
        ensure_demo_corpus(data / "vbdmd", num_train=6, num_valid=2, num_test=2, seconds=[1.0, 1.5],
                           noise_types=["white", "pink"])
    if "ears_wham" in corpora:  # the 48 kHz rows' corpus (same layout)
        ensure_demo_corpus(data / "ears_wham", num_train=6, num_valid=2, num_test=2, seconds=[1.0, 1.5],
                           noise_types=["white", "pink"], sample_rate=48000)
    if "noise" not in corpora:
        return
    rng = np.random.default_rng(0)
    for path in ("noise/DEMAND/DKITCHEN/ch01.wav", "noise/DEMAND/DKITCHEN/ch02.wav", "noise/DEMAND/STRAFFIC/ch01.wav",
                 "noise/DEMAND/STRAFFIC/ch02.wav", "noise/wham_noise/tr/a.wav"):
        write_audio(data / path, 0.1 * rng.standard_normal(8 * 16000).astype(np.float32), 16000)
