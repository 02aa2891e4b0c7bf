"""Enhancement: in memory (core: waveforms in, waveforms out; batching, chunking, overlap-add) and from
disk (folder: checked inputs, resumable outputs, the settings record); the enhance command (cli)."""
