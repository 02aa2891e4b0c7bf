"""sgmse_nc: noise-conditioned score-based (SGMSE+) speech enhancement.

The pipeline, one package per stage; each uses only those listed before it:

    foundations   errors io config threads cli audio spec condition checks
    nets/         NCSN++ and its conditioning paths (global embedding, cross-attention)
    encoders/     noise encoders E(r) -> z_r and their registry (none, cnn, sequence, clap, panns)
    diffusion/    SDEs and losses, samplers, the LightningModule, EMA, checkpoints
    data/         run-time datasets, datamodule, noise pools, honest references; data/prepare/: builders
    enhance/      in-memory enhancement (core), from disk (folder), the enhance command
    eval/         metrics (one registry), folder scoring, tables, plots, comparison, DNSMOS, diagnostics, report/
    train/        building and running a training, callbacks, validation metrics, the train command
    study/        the study in miniature: data, matched runs over seeds, the report, paired intervals

Commands (console scripts; the root train.py / enhance.py / evaluate.py are thin shims):

    sgmse-train     train a model (Hydra: conf/train.yaml + overrides)
    sgmse-enhance   enhance a folder of noisy wavs with a checkpoint
    sgmse-evaluate  PESQ / ESTOI / SI-SDR (and DNSMOS) tables of enhanced folders
    sgmse-report    the run-level report: every run x test set x guidance scale
    sgmse-prepare   build corpora and test sets (vbdmd, esc50, nonstationary)
    sgmse-demo      write the synthetic demo corpus
    sgmse-study     the study in miniature on the demo corpus, one command (resumable)

The Python API, for enhancing from your own code (NumPy or torch in, the same type, length and rate out):

    from sgmse_nc import Enhancer
    enhancer = Enhancer.from_checkpoint("outputs/demo/quickstart/checkpoints/last.ckpt", device="cpu")
    enhanced = enhancer.enhance(noisy, sample_rate, reference=noise_only, guidance=None)

Folders from Python: sgmse_nc.enhance.folder.enhance_folder(ckpt, noisy, out, EnhanceOptions(...)).

Every command exits 0 when done, 1 when partly done (the failures listed), 2 with one `error: ...` line for a
problem the user can fix, 130 when interrupted (sgmse_nc.cli).
"""

__all__ = ["Enhancer"]


def __getattr__(name: str):
    # imported on first use, so that `import sgmse_nc` stays light (no torch, no model code)
    if name == "Enhancer":
        from sgmse_nc.enhance.api import Enhancer

        return Enhancer
    raise AttributeError(f"module 'sgmse_nc' has no attribute {name!r}")
