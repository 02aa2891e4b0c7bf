"""Scoring: metrics (PESQ / ESTOI / SI-SDR, one registry), scoring a folder against clean references
(folder), tables of several systems (comparison), DNSMOS (dnsmos), embedding diagnostics (diagnostics),
the run-level report (report) and the evaluate command (evaluate)."""
