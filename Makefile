# Front door. `make demo`: set up + train/enhance/evaluate on the synthetic demo corpus (CPU, minutes).
#             `make test`: set up + run the test suite. Both are idempotent: done work is skipped.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN    ?= outputs/demo/quickstart
DEMO   ?= data/demo

.PHONY: setup demo test test-slow bench bench-gpu clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# The console scripts (pip install -e . puts them in $(BIN)); python train.py / enhance.py / evaluate.py are the same.
demo: setup
	$(BIN)/sgmse-train experiment=demo hydra.run.dir=$(RUN) ckpt_path=auto
	$(BIN)/sgmse-enhance --ckpt $(RUN)/checkpoints/last.ckpt --noisy $(DEMO)/test/noisy \
		--ref-dir $(DEMO)/test/noise_ref --threads auto --out $(RUN)/enhanced
	$(BIN)/sgmse-evaluate --enhanced $(RUN)/enhanced --clean $(DEMO)/test/clean \
		--noisy $(DEMO)/test/noisy --manifest $(DEMO)/test/manifest.csv --group-by snr --out $(RUN)/eval

test: setup
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

bench: setup
	$(BIN)/python bench/run.py

bench-gpu: setup  # < 8 min on one GPU: train step x precision x compile x channels_last, enhancement RTF
	$(BIN)/python bench/gpu.py --device cuda --out outputs/bench/gpu.json

clean-demo:
	rm -rf $(RUN)
