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

.PHONY: demo test test-slow lint bench install clean screenshot system-packages dashboard-screenshot

$(STAMP): pyproject.toml setup.py Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,cluster]'
	touch $(STAMP)

# Debian packages the service's tests start for real: chromium + chromedriver (dashboard, Selenium) and
# PostgreSQL (initdb + pg_ctl in a temp dir). Installed only when missing; needs root, as on CI.
system-packages:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing; fi

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dojo demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: $(STAMP) lint system-packages
	$(BIN)/pytest -q -n 2

test-slow: $(STAMP) system-packages
	$(BIN)/pytest -q -m slow -n 2 -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,cluster,bench]'  # torchao, the float8 peer of cfloat_convergence.py
	for f in benchmarks/*.py; do $(BIN)/python $$f || exit 1; done

# The README's screenshot of the demo report, taken by headless Chromium (Debian's package, installed here
# if missing). Run `make demo` first.
screenshot:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	  --disable-background-networking --disable-component-update --disable-sync \
	  --user-data-dir="$$(mktemp -d)" --hide-scrollbars --window-size=1280,2400 \
	  --screenshot=docs/report-screenshot.png "file://$(CURDIR)/runs/demo/report.html"

# The README's dashboard screenshot: the browser test saves the job page while its job runs.
dashboard-screenshot: $(STAMP) system-packages
	DOJO_DASHBOARD_SCREENSHOT=$(CURDIR)/docs/dashboard-screenshot.png $(BIN)/pytest -q -p no:cacheprovider \
	  -m slow tests/service/test_dashboard_browser.py -k real_browser

clean:
	rm -rf $(VENV) build src/*.egg-info
