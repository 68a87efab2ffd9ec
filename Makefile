# Two commands on a fresh machine with Python 3.11+: `make run`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run demo test lint web-deps check-python clean bench bench-quick chaos chaos-quick soak

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'

run: $(STAMP)
	LOG_FORMAT=$${LOG_FORMAT:-console} $(BIN)/python -m server serve

# A committee morning played against the server so every screen moves (SPEED=1 is
# real time); made-up examinees land in the embedded Postgres of DATA_DIR.
demo: $(STAMP)
	LOG_FORMAT=$${LOG_FORMAT:-console} $(BIN)/python -m server demo --speed $${SPEED:-10}

lint: $(STAMP)
	$(BIN)/ruff check server clients tests
	$(BIN)/mypy

test: lint web-deps
	$(BIN)/python -m pytest

# The browser tests' axe-core (tests/web/package.json, pinned by its lock file). Without
# npm it is not installed and the tests that need it say so and skip (CI requires it).
WEB_STAMP := tests/web/node_modules/.installed-stamp

web-deps: $(WEB_STAMP)

$(WEB_STAMP): tests/web/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/web --no-audit --no-fund --silent && touch $(WEB_STAMP); \
	else echo "npm not found: the browser tests that need axe-core will skip"; fi

# The benchmark (tests/bench, issue 6): its peers and load generator live in the
# optional `bench` group, installed on first use; results in tests/bench/results/.
BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m tests.bench

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m tests.bench --quick

# Chaos and soak behind nginx (tests/chaos, issue 23; docs/chaos.md): needs Debian's
# nginx; the same load generator as the benchmark. At most 30 minutes / 5 minutes.
chaos: $(BENCH_STAMP)
	$(BIN)/python -m tests.chaos

chaos-quick: $(BENCH_STAMP)
	$(BIN)/python -m tests.chaos --quick

# The issue's 30-minute soak alone: the same stack and crowd, no fault (no fault's
# name contains "none"). About 35 minutes; results in tests/chaos/results/soak/.
soak: $(BENCH_STAMP)
	$(BIN)/python -m tests.chaos --only none --soak 1800 --results soak

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
