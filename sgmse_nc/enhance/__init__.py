"""Enhancement: in memory (core: waveforms in, waveforms out; batching, chunking, overlap-add), from disk
(folder: checked inputs, resumable outputs, the settings record, EnhanceOptions), the Python API (api:
Enhancer, NumPy or torch at any rate) and the enhance command (cli)."""
