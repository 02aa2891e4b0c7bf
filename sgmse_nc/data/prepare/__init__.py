"""Offline corpus builders and their one command (`sgmse-prepare`, `python -m sgmse_nc.data.prepare`):
VoiceBank-DEMAND (vbdmd), ESC-50 out-of-distribution sets (esc50), non-stationary sets (nonstationary),
their shared SNR-set machinery (snr_sets, corpus), and the synthetic demo corpus (demo, `sgmse-demo`)."""
