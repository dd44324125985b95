# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# everything first; nothing is downloaded at run time.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU wheel of torch; pinned here so pip never resolves a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: demo test test-slow lint bench install clean

$(STAMP): pyproject.toml setup.py Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dojo demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: $(STAMP) lint
	$(BIN)/pytest -q -n 2

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow -p no:cacheprovider

bench: $(STAMP)
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build src/*.egg-info
