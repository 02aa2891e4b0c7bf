"""The Python API (sgmse_nc.Enhancer): NumPy or torch in, the same type, dtype, length and rate out; any rate;
the same result as sgmse-enhance on the same file and seed; one clear error per bad input; and the README's
example runs as written."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from tests.helpers import REPO_ROOT, fenced_blocks

FAST = {"N": 2}


@pytest.fixture(scope="module")
def enhancer(tiny_ckpt):
    from sgmse_nc import Enhancer

    return Enhancer.from_checkpoint(tiny_ckpt, device="cpu")


def signal(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_any_rate_numpy_and_torch_keep_type_dtype_and_length(enhancer, rate):
    noisy = np.append(signal(0.45, rate), np.float32(0.01))  # at 44.1/48 kHz resampled there and back: 2 too many
    out = enhancer.enhance(noisy, rate, reference=signal(0.3, rate, seed=1), **FAST)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == noisy.shape
    assert np.isfinite(out).all() and not np.allclose(out, noisy, atol=1e-3)
    as_torch = enhancer.enhance(torch.from_numpy(noisy).double(), rate, reference=signal(0.3, rate, seed=1), **FAST)
    assert isinstance(as_torch, torch.Tensor) and as_torch.dtype == torch.float64 and as_torch.shape == noisy.shape
    np.testing.assert_allclose(as_torch.numpy(), out, rtol=0, atol=1e-6)  # the same samples, whatever the type
    assert enhancer.enhance(noisy.astype(np.float64), rate, **FAST).dtype == np.float64


def test_the_reference_changes_the_result_of_a_conditional_model():
    from sgmse_nc import Enhancer

    # a conditional model whose condition path has trained (non-zero) weights, unlike a freshly built one
    enhancer = Enhancer.from_checkpoint(REPO_ROOT / "tests" / "fixtures" / "tiny_before_move.ckpt")
    assert enhancer.conditional
    noisy, reference = signal(0.5, 16000), signal(0.5, 16000, seed=1)
    with_ref = enhancer.enhance(noisy, 16000, reference=reference)
    without = enhancer.enhance(noisy, 16000)
    assert np.abs(with_ref - without).max() > 1e-4 * np.abs(without).max()
    np.testing.assert_array_equal(enhancer.enhance(noisy, 16000, reference=reference), with_ref)  # deterministic


@pytest.mark.parametrize("rate", [16000, 22050])
def test_equals_the_enhance_folder_output_on_the_same_file_and_seed(tmp_path, tiny_ckpt, enhancer, rate):
    from sgmse_nc.audio import write_audio
    from sgmse_nc.enhance.folder import EnhanceOptions, enhance_folder

    for sub, seconds, seed in (("noisy", 0.7, 0), ("refs", 0.5, 1)):
        (tmp_path / sub).mkdir()
        sf.write(tmp_path / sub / "a.wav", signal(seconds, rate, seed), rate, subtype="PCM_16")
    # a stochastic sampler, so that the seed and the name matter
    enhance_folder(tiny_ckpt, tmp_path / "noisy", tmp_path / "out", EnhanceOptions(
        resample=True, seed=3, sampler={"name": "sb_sde", **FAST}), ref_dir=tmp_path / "refs")
    noisy, _ = sf.read(tmp_path / "noisy" / "a.wav", dtype="float32")
    reference, _ = sf.read(tmp_path / "refs" / "a.wav", dtype="float32")
    out = enhancer.enhance(noisy, rate, reference=reference, sampler="sb_sde", seed=3, name="a.wav", **FAST)
    write_audio(tmp_path / "api.wav", out, rate)  # the same 16-bit format as the folder's file
    folder_file = sf.read(tmp_path / "out" / "a.wav", dtype="int16")[0]
    np.testing.assert_array_equal(sf.read(tmp_path / "api.wav", dtype="int16")[0], folder_file)
    # another seed (or name) draws other noise, and gives another file: the equality is not a coincidence
    for seed, name in ((4, "a.wav"), (3, "b.wav")):
        other = enhancer.enhance(noisy, rate, reference=reference, sampler="sb_sde", seed=seed, name=name, **FAST)
        write_audio(tmp_path / "other.wav", other, rate)
        assert not np.array_equal(sf.read(tmp_path / "other.wav", dtype="int16")[0], folder_file)


@pytest.mark.parametrize("noisy, rate, message", [
    (np.zeros((2, 16000), np.float32), 16000, r"`noisy` has shape \(2, 16000\): one channel.*x.mean\(axis=0\)"),
    (np.full(16000, np.nan, np.float32), 16000, "`noisy` contains NaN or Inf"),
    (np.zeros(200, np.float32), 16000, "`noisy` is too short: 200 samples at 16000 Hz, at least 31.875 ms"),
    (np.zeros(254, np.float32), 8000, "`noisy` is too short: 254 samples at 8000 Hz"),  # 508 at 16 kHz
    (np.zeros(16000, np.int16), 16000, r"`noisy` has dtype int16: float samples.*astype\(np.float32\) / 32768"),
    (torch.zeros(16000, dtype=torch.int32), 16000, "`noisy` has dtype torch.int32"),
    ([0.0] * 16000, 16000, "`noisy` is a list: a NumPy array or torch tensor is expected"),
    (np.zeros(16000, np.float32), 16000.0, r"`sample_rate=16000.0`: must be the waveform's rate in Hz"),
    (np.zeros(16000, np.float32), 0, "`sample_rate=0`"),
])
def test_bad_input_is_one_clear_error(enhancer, noisy, rate, message):
    from sgmse_nc.enhance.api import InputError
    from sgmse_nc.errors import UserError

    with pytest.raises(InputError, match=message) as err:
        enhancer.enhance(noisy, rate)
    assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)


def test_bad_reference_and_settings_are_one_clear_error(enhancer):
    from sgmse_nc.enhance.api import InputError

    noisy = signal(0.5, 16000)
    with pytest.raises(InputError, match="`reference` has shape"):
        enhancer.enhance(noisy, 16000, reference=np.zeros((16000, 2), np.float32))
    with pytest.raises(InputError, match="`reference` is too short.*reference=None"):
        enhancer.enhance(noisy, 16000, reference=np.zeros(100, np.float32))
    with pytest.raises(InputError, match="`N=0`: must be at least 1"):
        enhancer.enhance(noisy, 16000, N=0)
    with pytest.raises(InputError, match="`guidance=nan`"):
        enhancer.enhance(noisy, 16000, guidance=float("nan"))
    with pytest.raises(InputError, match=r"has no option\(s\) \['snr_typo'\]"):
        enhancer.enhance(noisy, 16000, snr_typo=0.5)
    with pytest.raises(InputError, match="unknown sampler 'fast'"):
        enhancer.enhance(noisy, 16000, sampler="fast")


def test_import_stays_light_and_exports_the_enhancer_lazily():
    code = ("import sys, sgmse_nc; assert 'torch' not in sys.modules, 'import sgmse_nc loaded torch'; "
            "assert 'Enhancer' in sgmse_nc.__all__ and 'Enhancer' in sgmse_nc.__doc__; "
            "from sgmse_nc import Enhancer; assert Enhancer.__module__ == 'sgmse_nc.enhance.api'; "
            "assert 'torch' in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    import sgmse_nc

    with pytest.raises(AttributeError, match="no attribute 'Enhancr'"):
        sgmse_nc.Enhancr  # noqa: B018


def readme_python_example() -> str:
    """The ```python block of the README's Python API section."""
    blocks = [b.text for b in fenced_blocks(REPO_ROOT / "README.md", "python") if b.section == "Python API"]
    assert len(blocks) == 1, "the Python API section holds one ```python example"
    return blocks[0]


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, tiny_ckpt):
    """The demo's layout in a temporary folder (the tiny checkpoint for the demo's, synthetic files for the demo
    corpus's), then the README's block, unchanged, from there."""
    code = readme_python_example()
    assert 5 <= len([line for line in code.splitlines() if line.strip()]) <= 6
    paths = re.findall(r'"((?:outputs|data)/[^"]+)"', code)
    ckpt = next(p for p in paths if p.endswith(".ckpt"))
    (tmp_path / ckpt).parent.mkdir(parents=True)
    shutil.copy(tiny_ckpt, tmp_path / ckpt)
    wavs = [p for p in paths if p.endswith(".wav")]
    assert [p.split("/")[-2] for p in wavs] == ["noisy", "noise_ref"] and all("data/demo/test/" in p for p in wavs)
    for seed, path in enumerate(wavs):
        (tmp_path / path).parent.mkdir(parents=True)
        sf.write(tmp_path / path, signal(0.6 if seed == 0 else 0.4, 16000, seed), 16000, subtype="PCM_16")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    noisy, rate = sf.read(tmp_path / wavs[0])
    assert scope["rate"] == rate == 16000
    enhanced = scope["enhanced"]
    assert isinstance(enhanced, np.ndarray) and enhanced.dtype == noisy.dtype and enhanced.shape == noisy.shape
    assert np.isfinite(enhanced).all()
