"""Scoring: metrics and the one metric registry (metrics), scoring a folder against clean references (folder),
per-file rows reused on a rerun (rows), summary tables and the Markdown table writer (tables), box plots and
saving figures (plots), tables of several systems (comparison), DNSMOS (dnsmos), embedding diagnostics
(diagnostics), the run-level report (report) and the evaluate command (evaluate)."""
