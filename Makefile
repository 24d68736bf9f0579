# Two-command start: `make demo` and `make test` each create .venv if it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fastseg-installed

.PHONY: demo test test-fast lint bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fastseg demo --out outputs/demo --force

# -n auto: a pytest-xdist worker per core, at most 4 (tests/conftest.py); -n 0 runs in one process
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto

# The edit loop: the tests not marked slow. CI runs `make test`, all of them.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto -m "not slow" -q

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/train_throughput.py --batch-size 4 --steps 3

clean:
	rm -rf $(VENV) outputs/demo .pytest_cache
