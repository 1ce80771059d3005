# Two commands do all the set-up: `make demo` and `make test` (each creates .venv when missing).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench bench-al clean argilla-venv argilla-up argilla-down

# torch first and pinned: pip takes the local CPU wheel; a bare requirement pulls a CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,bench]"
	$(BIN)/curate build-encoder
	touch $(STAMP)

install: $(STAMP)

# The local Argilla server's own venv ($CURATION_HOME/argilla-server-venv; argilla-server's pins clash
# with prefect's): made once, redone when annotators/server-requirements.txt changes.
argilla-venv: install
	$(BIN)/python -c "from annotators.local_server import LocalArgilla; LocalArgilla().ensure_venv()"

argilla-up: argilla-venv
	$(BIN)/curate argilla up

argilla-down: install
	$(BIN)/curate argilla down

demo: install
	$(BIN)/curate run configs/demo.yaml

test: install argilla-venv
	$(BIN)/ruff check .
	$(BIN)/pytest

# Every side-by-side measurement, then the README's summary table (bench/readme.py). About 25 min on 2 cores.
bench: install
	$(BIN)/python bench/lid_bench.py
	$(BIN)/python bench/dedup_bench.py
	$(BIN)/python bench/dedup_scale.py
	$(BIN)/python bench/embed_bench.py
	$(BIN)/python bench/coverage_bench.py
	$(BIN)/python bench/translation_bench.py
	$(BIN)/python bench/e2e_bench.py
	$(BIN)/python bench/gpu_bench.py
	$(BIN)/python bench/readme.py

# The active-learning simulations (3 seeds, SIB-200 and XLM-T): about an hour on 2 cores.
bench-al: install
	$(BIN)/python bench/al_bench.py
	$(BIN)/python bench/readme.py

clean:
	rm -rf runs .pytest_cache
