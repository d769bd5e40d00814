# Two commands do all the set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean bench lint mutation

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/defistress run eth-crash --seed 1 --out runs/eth-crash

test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 tests
	rm -rf build/notebooks && mkdir -p build/notebooks
	for nb in notebooks/*.py; do $(BIN)/jupytext --quiet --to ipynb "$$nb" -o "build/notebooks/$$(basename "$$nb" .py).ipynb"; done
	$(BIN)/python -m pytest -n 2 --nbmake build/notebooks

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# Mutation testing of the crash-deciding modules (slow, niced, one worker; not part of `make test`).
# `make mutation GROUPS="perps cdp"` runs some groups of tests/mutation/modules.toml; the report goes to
# tests/mutation/report.md.
mutation: $(STAMP)
	test -x $(BIN)/mutmut || $(BIN)/pip install --quiet -e ".[mutation]"
	$(BIN)/python tests/mutation/run.py $(GROUPS)

clean:
	rm -rf $(VENV) runs build *.egg-info
