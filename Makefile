# Two commands do all the set-up: `make demo` and `make test` (each creates .venv when missing).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean

# torch first and pinned: pip takes the local CPU wheel; a bare requirement pulls a CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,bench]"
	$(BIN)/curate build-encoder
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/curate run configs/demo.yaml

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/dedup_bench.py
	$(BIN)/python bench/lid_bench.py

clean:
	rm -rf runs .pytest_cache
