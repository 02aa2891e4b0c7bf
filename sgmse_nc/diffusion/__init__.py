"""The diffusion model: SDEs and their losses (sde), samplers as plain functions with one registry
(sampling), the LightningModule that trains and samples (model), its weight average (ema), and reading
our own and published SGMSE+ checkpoints (checkpoints). Uses nets/ and encoders/ and the foundations."""
