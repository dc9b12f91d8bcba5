# Two commands do all the set-up on a fresh clone:
#   make quickstart   install, pretrain on the embedded data, evaluate on the quick suite, show the board
#   make test         install, run the test suite (CPU, offline)
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export HF_DATASETS_OFFLINE := 1
export HF_HUB_OFFLINE := 1
export RAY_AUTH_MODE := disabled

.PHONY: install quickstart test test-fast lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

quickstart: install
	$(BIN)/clrbench pretrain quickstart --resume
	$(BIN)/clrbench eval --checkpoint runs/quickstart/last.pt \
		--checkpoint random:resnet18,width=0.25,stem=cifar --tasks quick --results runs/quickstart/results

test: install
	$(BIN)/ruff check clrbench tests benchmarks
	$(BIN)/mypy clrbench
	$(BIN)/python -m pytest -q -m "not gpu" --durations=15

test-fast: install
	$(BIN)/python -m pytest -q -m "not gpu and not slow and not dist and not ray"

lint: install
	$(BIN)/ruff check clrbench tests benchmarks

bench: install
	$(BIN)/python benchmarks/pretrain_throughput.py
	$(BIN)/python benchmarks/probe_speed.py

clean:
	rm -rf runs .cache results/records
