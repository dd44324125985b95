# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# everything first; nothing is downloaded at run time.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned and installed first, so the project's own install never resolves another build. This
# project's machines carry the CPU wheel on pip's local wheel path; elsewhere plain PyPI serves a CUDA build
# on Linux: ask for the CPU one with  make test TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH := torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: demo test test-slow lint bench install clean screenshot

$(STAMP): pyproject.toml setup.py Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,cluster]'
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

# The README's screenshot of the demo report, taken by headless Chromium (Debian's package, installed here
# if missing). Run `make demo` first.
screenshot:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	  --disable-background-networking --disable-component-update --disable-sync \
	  --user-data-dir="$$(mktemp -d)" --hide-scrollbars --window-size=1280,2400 \
	  --screenshot=docs/report-screenshot.png "file://$(CURDIR)/runs/demo/report.html"

clean:
	rm -rf $(VENV) build src/*.egg-info
