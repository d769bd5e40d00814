# Two commands do all the set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean bench lint fuzz

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/defistress run eth-crash --seed 1 --out runs/eth-crash --force

test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 tests
	rm -rf build/notebooks && mkdir -p build/notebooks
	for nb in notebooks/*.py; do $(BIN)/jupytext --quiet --to ipynb "$$nb" -o "build/notebooks/$$(basename "$$nb" .py).ipynb"; done
	$(BIN)/python -m pytest -n 2 --nbmake build/notebooks

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# the input-contract fuzz test with a long random budget (make test runs a small fixed one)
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(BIN)/python -m pytest -q tests/test_fuzz_contract.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs build *.egg-info
