# Two commands do all the set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean bench lint typecheck

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
	$(MAKE) --no-print-directory typecheck

# mypy reads the sources through build/ns, symlinks that lay the folders out as the installed namespace
typecheck: $(STAMP)
	$(BIN)/python tools/ns_tree.py > /dev/null
	cd build/ns && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p defistress

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs build *.egg-info
