# privaudit: every target installs what it needs first, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
MODELS := fixtures/models
DATA := fixtures/data

.PHONY: install demo test lint fixtures bench bench-modiva bench-modiva-paper clean

install: $(STAMP)

# torch first, pinned: the CPU wheel on this machine's disk; a looser pin pulls a multi-GB CUDA build. The ray extra
# comes with it, so that make test runs the --executor ray tests (Ray needs no torch of its own).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/privaudit epsilon $(MODELS)/intent-tiny-dp
	$(BIN)/privaudit mia $(MODELS)/intent-tiny --members $(DATA)/members.jsonl --non-members $(DATA)/non_members.jsonl \
		--population $(DATA)/population.jsonl --attack all --reference-models 4 --report out/mia-intent-tiny.html
	$(BIN)/privaudit mia $(MODELS)/intent-tiny-dp --members $(DATA)/members.jsonl --non-members $(DATA)/non_members.jsonl \
		--attack loss,entropy,modified-entropy
	$(BIN)/privaudit canary $(MODELS)/intent-tiny -c $(MODELS)/intent-tiny.canaries.jsonl --one-run \
		--report out/canary-intent-tiny.html
	@echo "HTML reports: out/mia-intent-tiny.html out/canary-intent-tiny.html"

# The HTML report's screenshot test needs headless Chromium (Debian's package); best effort, as root only: where it
# cannot be installed the test skips and says why.
test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ timeout 300 apt-get update -qq && timeout 600 apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed: the HTML screenshot test will skip"; }
	$(PY) -m pytest -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# Regenerate the fixture data and models from their seeds.
fixtures: $(STAMP)
	$(PY) fixtures/generate_data.py --out $(DATA) --seed 0
	$(PY) fixtures/make_models.py

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,ray,bench]'
	$(PY) benchmarks/run.py

# ModIvA's study (Parikh et al. 2022): a model per defence, 20 canaries each; apart from `make bench` for its cost.
bench-modiva: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) benchmarks/run.py --only modiva-study

# ModIvA's study in paper mode (benchmarks/modiva_paper.py): N models of one secret each per architecture x defence x
# repeats; rows that need flags this checkout lacks (--arch bilstm/cnn ...) are skipped with a note.
bench-modiva-paper: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	OMP_NUM_THREADS=1 $(PY) benchmarks/run.py --only modiva-paper

clean:
	rm -rf $(VENV) out .pytest_cache
