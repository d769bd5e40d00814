# Two commands do all the set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the Anvil node and the Aave / Uniswap artifacts, fetched from npm into chain/node_modules (never committed)
CHAIN_STAMP := chain/node_modules/.package-lock.json

.PHONY: demo test install clean bench lint chain

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

chain: $(CHAIN_STAMP)

$(CHAIN_STAMP): chain/package.json chain/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: the chain tests need node >= 20 and npm (https://nodejs.org/): install them, then run 'make test' again" >&2; exit 1; }
	cd chain && npm ci --no-audit --no-fund

demo: $(STAMP)
	$(BIN)/defistress run eth-crash --seed 1 --out runs/eth-crash

test: $(STAMP) lint chain
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests
	rm -rf build/notebooks && mkdir -p build/notebooks
	for nb in notebooks/*.py; do $(BIN)/jupytext --quiet --to ipynb "$$nb" -o "build/notebooks/$$(basename "$$nb" .py).ipynb"; done
	$(BIN)/python -m pytest -n 2 --nbmake build/notebooks

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs build *.egg-info chain/node_modules
