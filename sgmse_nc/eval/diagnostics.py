"""Embedding diagnostics: where a run's encoder puts test-set references relative to its training references.

The study's worry: an encoder trained on one noise family maps unseen noise outside the region the score
network learned, so conditioning hurts out of distribution. This module measures it:

- embed: each reference is encoded exactly as enhancement does (normalised by its noisy file's peak,
  model.encode once; a token condition is averaged over tokens, a structured one gives its global part);
- stats: per set, embedding norm mean/std, mean per-dimension variance and the participation ratio of the
  covariance spectrum (effective dimensions; near 1 = collapsed);
- OOD score per file: mean distance to the k nearest training embeddings divided by the same quantity
  for the training embeddings themselves (leave-one-out, median over training files). About 1 in
  distribution, larger outside;
- a 2-D map (PCA fitted on training; t-SNE when asked and scikit-learn has it) coloured by set;
- joined to per-file metrics: the improvement over the noisy input per OOD-score bin, per w (table + scatter);
- guidance "auto": w(s) = w_max · clip((s_hi − s) / (s_hi − s_lo), 0, 1), snapped to the nearest computed w:
  full guidance in distribution, falling to the unconditional score (w = 0) as the score grows. It uses
  only the reference (never the clean signal), so it is a fair system to compare with fixed w.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sgmse_nc.audio import list_audio, read_audio
from sgmse_nc.eval.metrics import METRICS
from sgmse_nc.eval.plots import save_figure
from sgmse_nc.eval.tables import markdown_table
from sgmse_nc.io import write_csv, write_text_atomic

K_NEIGHBOURS = 5


# ------------------------------------------------------------------------------------------------ embeddings

def _global(z) -> torch.Tensor:
    """[B, D] from what model.encode returns: a tensor [B, D] / tokens [B, L, D], or a Condition (its global
    embedding, else the mean of its real tokens)."""
    if isinstance(z, torch.Tensor):
        return z.mean(1) if z.dim() == 3 else z
    if z.embedding is not None:
        return z.embedding
    if z.mask is None:
        return z.tokens.mean(1)
    keep = z.mask.unsqueeze(-1).to(z.tokens.dtype)
    return (z.tokens * keep).sum(1) / keep.sum(1).clamp_min(1)


@torch.no_grad()
def embed_files(model, references: list[Path], noisy: list[Path | None], ref_seconds: float | None = None
                ) -> np.ndarray:
    """Embeddings [N, D] of reference files as enhancement encodes them: the stretch it takes (ref_seconds, else
    the checkpoint's), normalised by its noisy file's peak."""
    from sgmse_nc.enhance.core import reference_samples, reference_stretch

    length = reference_samples(model, ref_seconds)
    out = []
    for ref_path, noisy_path in zip(references, noisy):
        ref = reference_stretch(read_audio(ref_path, min_samples=model.spec.n_fft), length)
        peak = read_audio(noisy_path, min_samples=0).abs().max() if noisy_path is not None else ref.abs().max()
        r_wav = (ref / peak.clamp_min(1e-8)).to(model.device)[None]
        out.append(_global(model.encode(model.spec.to_spec(r_wav).unsqueeze(1), r_wav)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.encoder.embed_dim))


@torch.no_grad()
def embed_examples(model, dataset, indices, batch: int = 16) -> np.ndarray:
    """Embeddings [N, D] of the references of training examples (dataset items with r, r_wav, already
    normalised by their noisy peak), encoded as training encodes them; examples without an honest reference
    (ref_null) are left out."""
    items = [item for item in (dataset[int(i)] for i in indices) if not bool(item.get("ref_null", False))]
    out = []
    for start in range(0, len(items), batch):
        part = items[start:start + batch]
        r = torch.stack([item["r"] for item in part]).to(model.device)
        r_wav = torch.stack([item["r_wav"] for item in part]).to(model.device)
        out.append(_global(model.encode(r, r_wav)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.encoder.embed_dim))


def set_references(ref_dir: Path, noisy_dir: Path, limit: int | None = None, seed: int = 0):
    """(ids, reference files, noisy files or None) of a reference folder; a seeded sample of `limit` files."""
    files = list_audio(ref_dir)
    if limit is not None and len(files) > limit:
        keep = np.random.default_rng(seed).choice(len(files), limit, replace=False)
        files = [files[i] for i in sorted(keep)]
    rel = [f.relative_to(ref_dir) for f in files]
    noisy = [noisy_dir / r for r in rel]
    return [r.with_suffix("").as_posix() for r in rel], files, [n if n.is_file() else None for n in noisy]


# ------------------------------------------------------------------------------------------------ statistics

def embedding_stats(emb: np.ndarray) -> dict:
    """Norms and spread: a collapsed encoder has tiny variance and a participation ratio near 1."""
    norms = np.linalg.norm(emb, axis=1)
    if len(emb) > 1:
        eig = np.clip(np.linalg.eigvalsh(np.cov(emb, rowvar=False)), 0, None)
        ratio = float(eig.sum() ** 2 / max((eig ** 2).sum(), 1e-30))
        variance = float(emb.var(axis=0).mean())
    else:
        ratio, variance = float("nan"), float("nan")
    return {"n": int(len(emb)), "norm_mean": float(norms.mean()) if len(emb) else float("nan"),
            "norm_std": float(norms.std()) if len(emb) else float("nan"), "mean_dim_variance": variance,
            "participation_ratio": ratio, "dims": int(emb.shape[1])}


def _knn_mean(dist: np.ndarray, k: int) -> np.ndarray:
    k = min(k, dist.shape[1])
    return np.sort(dist, axis=1)[:, :k].mean(axis=1)


def ood_scores(train: np.ndarray, test: np.ndarray, k: int = K_NEIGHBOURS) -> np.ndarray:
    """Mean distance of each test embedding to its k nearest training embeddings, over the median of the
    same quantity among training embeddings (each without itself): ≈ 1 in distribution, > 1 outside."""
    if len(train) < 2:
        raise ValueError("the OOD score needs at least two training embeddings")
    own = np.linalg.norm(train[:, None] - train[None], axis=-1)
    np.fill_diagonal(own, np.inf)
    scale = float(np.median(_knn_mean(own, min(k, len(train) - 1))))
    dist = np.linalg.norm(test[:, None] - train[None], axis=-1)
    return _knn_mean(dist, k) / max(scale, 1e-12)


def auto_guidance(score: np.ndarray, grid, s_lo: float = 1.0, s_hi: float = 3.0) -> np.ndarray:
    """The documented monotone map: w_max at scores <= s_lo, 0 at scores >= s_hi, linear between, snapped to
    the nearest w of `grid` (the scales actually enhanced)."""
    grid = np.array(sorted(float(w) for w in grid))
    w = grid.max() * np.clip((s_hi - np.asarray(score, dtype=float)) / (s_hi - s_lo), 0.0, 1.0)
    return grid[np.abs(w[:, None] - grid[None]).argmin(axis=1)]


# -------------------------------------------------------------------------------------------- tables & plots

def binned_improvement(table: pd.DataFrame, metrics, bins: int = 3) -> pd.DataFrame:
    """Mean improvement (delta_<metric>) per OOD-score bin (quantiles) and w: columns bin, w, n, Δ metrics."""
    table = table.copy()
    n_bins = max(1, min(bins, table["ood_score"].nunique()))
    table["bin"] = pd.qcut(table["ood_score"].rank(method="first"), n_bins, labels=False)
    edges = table.groupby("bin")["ood_score"].agg(["min", "max"])
    rows = []
    for (b, w), part in table.groupby(["bin", "w"], sort=True):
        rows.append({"ood_bin": f"{edges.loc[b, 'min']:.2f}–{edges.loc[b, 'max']:.2f}", "w": w, "n": len(part),
                     **{f"delta_{m}": float(part[f"delta_{m}"].mean()) for m in metrics}})
    return pd.DataFrame(rows)


def _frame_markdown(frame: pd.DataFrame, decimals: int = 2) -> str:
    """A DataFrame as Markdown: improvements signed, `decimals` > 2 as significant digits."""
    cols = list(frame.columns)
    rows = [[f"{v:+.{decimals}f}" if isinstance(v, float) and c.startswith("delta_")
             else f"{v:.{decimals}g}" if isinstance(v, float) and decimals > 2
             else f"{v:.{decimals}f}" if isinstance(v, float) else str(v)
             for c, v in zip(cols, row)] for row in frame.itertuples(index=False)]
    return markdown_table(cols, rows)


def plot_map(points: dict[str, np.ndarray], train: np.ndarray, path: Path, method: str = "pca") -> str:
    """2-D map of the training and every set's embeddings; returns the method used."""
    from matplotlib.figure import Figure

    names = ["train", *points]
    stacked = np.concatenate([train, *points.values()])
    if method == "tsne" and len(stacked) > 5:
        from sklearn.manifold import TSNE

        xy = TSNE(2, perplexity=min(30.0, len(stacked) - 1.0), init="pca", random_state=0).fit_transform(stacked)
    else:
        method = "pca"
        mean = train.mean(0)
        _, _, vt = np.linalg.svd(train - mean, full_matrices=False)  # PCA fitted on the training embeddings
        xy = (stacked - mean) @ vt[:2].T if vt.shape[0] >= 2 else np.c_[(stacked - mean) @ vt[:1].T, 0 * stacked[:, 0]]
    fig = Figure(figsize=(5.5, 4.5), layout="tight")
    ax = fig.subplots()
    start = 0
    for name, emb in zip(names, [train, *points.values()]):
        part = xy[start:start + len(emb)]
        start += len(emb)
        ax.scatter(part[:, 0], part[:, 1], s=10 if name == "train" else 18, alpha=0.5 if name == "train" else 0.9,
                   label=name, marker="." if name == "train" else "o")
    ax.set_title(f"reference embeddings ({method.upper()})")
    ax.legend(loc="best", fontsize="small")
    save_figure(fig, path, dpi=110)
    return method


def plot_scatter(table: pd.DataFrame, metric: str, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4), layout="tight")
    ax = fig.subplots()
    for w, part in table.groupby("w"):
        ax.scatter(part["ood_score"], part[f"delta_{metric}"], s=14, label=f"w={w}")
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_xlabel("OOD score (k-NN distance / training's own)")
    ax.set_ylabel(f"Δ {METRICS[metric].label} over noisy")
    ax.legend(loc="best", fontsize="small")
    save_figure(fig, path, dpi=110)


def write_diagnostics(out_dir: Path, train: np.ndarray, sets: dict[str, tuple[list[str], np.ndarray]],
                      per_file: pd.DataFrame | None, metrics, method: str = "pca", k: int = K_NEIGHBOURS) -> dict:
    """Everything above into out_dir: embedding_map.png, embedding_stats.json, ood_scores.csv,
    diagnostics.md, ood_vs_improvement.csv / ood_scatter.png (when per-file metrics are given: columns set,
    id, w, delta_<metric>). Returns {"scores": DataFrame(set, id, ood_score), "stats": ...}."""
    out_dir = Path(out_dir)
    stats = {"train": embedding_stats(train), **{name: embedding_stats(emb) for name, (_, emb) in sets.items()}}
    scores = pd.DataFrame([{"set": name, "id": i, "ood_score": float(s)} for name, (ids, emb) in sets.items()
                           for i, s in zip(ids, ood_scores(train, emb, k))])
    write_csv(scores, out_dir / "ood_scores.csv")
    write_text_atomic(out_dir / "embedding_stats.json", json.dumps(stats, indent=2) + "\n")
    used = plot_map({n: e for n, (_, e) in sets.items()}, train, out_dir / "embedding_map.png", method)
    stat_table = pd.DataFrame([{"set": n, **s} for n, s in stats.items()])
    ood_table = scores.groupby("set")["ood_score"].agg(["mean", "median", "max"]).reset_index()
    parts = ["# Embedding diagnostics", "",
             f"OOD score: mean distance to the {k} nearest training embeddings over the training set's own "
             f"(median, leave-one-out); ≈ 1 in distribution. Map: {used.upper()} (fitted on training).", "",
             "## Embedding statistics (collapse check: participation ratio ≈ 1 or tiny variance)", "",
             _frame_markdown(stat_table, 3), "", "## OOD score per set", "", _frame_markdown(ood_table), "",
             "![map](embedding_map.png)"]
    if per_file is not None and len(per_file):
        joined = per_file.merge(scores, on=["set", "id"], how="inner")
        binned = binned_improvement(joined, metrics)
        write_csv(binned, out_dir / "ood_vs_improvement.csv")
        plot_scatter(joined, metrics[-1], out_dir / "ood_scatter.png")
        parts += ["", "## Improvement over the noisy input per OOD-score bin (all sets pooled)", "",
                  _frame_markdown(binned), "", "![scatter](ood_scatter.png)"]
    write_text_atomic(out_dir / "diagnostics.md", "\n".join(parts) + "\n")
    return {"scores": scores, "stats": stats}
