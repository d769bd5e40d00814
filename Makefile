# Two commands do all the set-up: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the Anvil node and the Aave / Uniswap artifacts, fetched from npm into chain/node_modules (never committed)
CHAIN_STAMP := chain/node_modules/.package-lock.json

.PHONY: demo test install clean bench lint chain typecheck docs check-install readme-figures mutation fuzz

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
	$(BIN)/defistress run eth-crash --seed 1 --out runs/eth-crash --force

test: $(STAMP) chain lint docs
	bash .ci/browser.sh
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests
	rm -rf build/notebooks && mkdir -p build/notebooks
	for nb in notebooks/*.py; do $(BIN)/jupytext --quiet --to ipynb "$$nb" -o "build/notebooks/$$(basename "$$nb" .py).ipynb"; done
	$(BIN)/python -m pytest -n 2 --nbmake build/notebooks

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory typecheck

# mypy reads the sources through build/ns, symlinks that lay the folders out as the installed namespace
typecheck: $(STAMP)
	$(BIN)/python .ci/ns_tree.py > /dev/null
	cd build/ns && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p defistress

# the documentation site in build/site (strict: any warning fails; never add --quiet, which hides warnings from
# the strict count); DEFISTRESS_DOCS_EXECUTE=false skips running the notebooks for a quicker build
docs: $(STAMP) $(CHAIN_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# a plain (non-editable) install works: wheel -> fresh venv -> defistress from another directory (about 1-2 min)
check-install: $(STAMP)
	bash .ci/check_install.sh

# the seed-1 summaries behind the README's figures of the slower scenarios (tests/data/readme_figures.json);
# tests/test_readme.py says when they are stale (about 10 minutes)
readme-figures: $(STAMP)
	$(BIN)/python benchmarks/readme_figures.py

# the input-contract fuzz test with a long random budget (make test runs a small fixed one)
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(BIN)/python -m pytest -q tests/test_fuzz_contract.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# Mutation testing of the crash-deciding modules (slow, niced, one worker; not part of `make test`).
# `make mutation GROUPS="perps cdp"` runs some groups of tests/mutation/modules.toml; the report goes to
# tests/mutation/report.md.
mutation: $(STAMP)
	test -x $(BIN)/mutmut || $(BIN)/pip install --quiet -e ".[mutation]"
	$(BIN)/python tests/mutation/run.py $(GROUPS)

clean:
	rm -rf $(VENV) runs build .cache *.egg-info chain/node_modules
