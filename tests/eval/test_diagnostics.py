"""Embedding diagnostics: the OOD score separates a noise family absent from training from in-family noise;
the auto-guidance map is monotone; the collapse statistics see a collapsed encoder."""
import numpy as np
import pandas as pd
import pytest
import torch

from sgmse_nc.eval.diagnostics import auto_guidance, binned_improvement, embedding_stats, ood_scores, write_diagnostics

SR = 16000


def noise(family: str, seed: int, seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    white = rng.standard_normal(n)
    if family == "white":
        return white * rng.uniform(0.5, 2)
    if family == "brown":  # low-pass: integrated white noise, leaky
        return np.array(torch.from_numpy(white).cumsum(0) * 0.02) * rng.uniform(0.5, 2)
    if family == "hum":  # mains hum with harmonics: a family training never saw
        t = np.arange(n) / SR
        f0 = rng.uniform(45, 65)
        return sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 6)) + 0.01 * white
    raise ValueError(family)


def spectral_encoder(wav: np.ndarray, bands: int = 16) -> np.ndarray:
    """A deterministic encoder: log energy in `bands` STFT bands, level-normalised (the spectral shape)."""
    spec = torch.stft(torch.from_numpy(wav).float(), 510, 128, window=torch.hann_window(510),
                      return_complex=True).abs().pow(2).mean(-1)
    energy = torch.stack([b.sum() for b in spec.chunk(bands)])
    log = torch.log10(energy / energy.sum() + 1e-10)
    return log.numpy()


def embed(family: str, seeds) -> np.ndarray:
    return np.stack([spectral_encoder(noise(family, s)) for s in seeds])


def test_ood_score_is_larger_for_a_noise_family_absent_from_training():
    train = np.concatenate([embed("white", range(0, 20)), embed("brown", range(20, 40))])
    in_family = np.concatenate([embed("white", range(100, 105)), embed("brown", range(105, 110))])
    absent = embed("hum", range(200, 210))
    s_in, s_out = ood_scores(train, in_family), ood_scores(train, absent)
    assert np.median(s_in) == pytest.approx(1.0, abs=0.6)  # normalised by training's own k-NN distances
    assert s_out.min() > s_in.max()
    assert s_out.mean() > 3 * s_in.mean()


def test_auto_guidance_is_monotone_and_snaps_to_the_grid():
    scores = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 9.0])
    w = auto_guidance(scores, [0, 1, 3, 5], s_lo=1.0, s_hi=3.0)
    assert list(w) == [5, 5, 3, 3, 1, 0, 0]
    assert np.all(np.diff(w) <= 0)


def test_collapse_statistics():
    rng = np.random.default_rng(0)
    spread, collapsed = rng.standard_normal((50, 8)), np.ones((50, 8)) + 1e-4 * rng.standard_normal((50, 8))
    assert embedding_stats(spread)["participation_ratio"] > 5
    assert embedding_stats(collapsed)["mean_dim_variance"] < 1e-6


def test_written_diagnostics_join_scores_to_improvements(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.standard_normal((30, 4))
    sets = {"in": (["a", "b", "c"], rng.standard_normal((3, 4))), "ood": (["a", "b", "c"], 5 + rng.standard_normal((3, 4)))}
    per_file = pd.DataFrame([{"set": s, "id": i, "w": w, "delta_si_sdr": (3.0 if s == "in" else -2.0) * w}
                             for s in sets for i in "abc" for w in (0, 1)])
    out = write_diagnostics(tmp_path, train, sets, per_file, ["si_sdr"])
    scores = out["scores"].groupby("set")["ood_score"].mean()
    assert scores["ood"] > scores["in"]
    binned = pd.read_csv(tmp_path / "ood_vs_improvement.csv")
    w1 = binned[binned["w"] == 1]
    assert w1["delta_si_sdr"].iloc[0] == 3.0 and w1["delta_si_sdr"].iloc[-1] == -2.0  # the OOD bin is last
    assert binned_improvement(out["scores"].merge(per_file), ["si_sdr"])["n"].sum() == len(per_file)
    for name in ("embedding_map.png", "ood_scatter.png", "diagnostics.md", "embedding_stats.json"):
        assert (tmp_path / name).stat().st_size > 100
