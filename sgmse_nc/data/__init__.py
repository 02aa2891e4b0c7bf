"""Run-time data: datasets (paired folders, dynamic mixing) and the datamodule, activity detection, noise pools
and the noise pairs drawn from them (noise_source), augmentation, honest noise references (references,
honesty, pauses), levels, manifests and the up-front scan of a run's files. The offline corpus builders and
their command are in data/prepare/."""
