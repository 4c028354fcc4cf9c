# From a fresh clone: `make serve` serves, `make test` tests; each installs first when needed.
# Python deps install into .venv once (a stamp file newer than pyproject.toml says it is done);
# `make install` forces it again. `make test` also checks the Debian packages the tests use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := tests/node/node_modules/.installed
INSTALL_LOG := build/install.log
ARGS ?=
# llama.cpp is built for a portable x86-64 baseline (AVX2/FMA/F16C, no AVX-512, no AMX):
# these machines run on Intel CPUs with AMX (whose kernels die with SIGILL under a native
# build) and on AMD CPUs without AVX-512 (where an AVX-512 build dies with SIGILL), and pip's
# wheel cache would carry a CPU-specific build from one to the other.
# The flags live in one file, which scripts/build_llama_server.py reads too.
LLAMA_CMAKE_ARGS := $(shell cat scripts/llama-cmake-args)

# The steps depend on order (system packages before npm ci), so never run them in parallel.
.NOTPARALLEL:
.PHONY: serve test test-fast install system-deps lint bench llama-server

serve: $(STAMP)
	$(VENV)/bin/faceplate serve $(ARGS)

test: system-deps $(STAMP) $(NODE_STAMP) llama-server
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e and not services"

install:
	rm -f $(STAMP) $(NODE_STAMP)
	$(MAKE) --no-print-directory $(STAMP) $(NODE_STAMP)

# PostgreSQL, Redis, Chromium, Node.js: installed with apt-get where allowed, else named (the
# tests that need them skip). Serving needs none of them.
system-deps:
	bash scripts/system-deps.sh

# pip -v through scripts/pip_progress.py: the llama.cpp compile (8-15 min on 2 cores) reports
# every ~10 %; the full log is $(INSTALL_LOG), and its tail is printed if pip fails.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) scripts/pip_progress.py $(INSTALL_LOG) -- $(PY) -m pip install -v -e '.[dev]'
	touch $@

# Node client tests (tests/node). Without npm this prints why and leaves no stamp, so the next
# run tries again (after `make test` has installed npm, say).
$(NODE_STAMP): tests/node/package-lock.json
	@if command -v npm >/dev/null; then \
	  echo "npm ci --prefix tests/node"; npm ci --prefix tests/node --no-audit --no-fund && touch $@; \
	else echo "npm not found: skipping tests/node's packages (the Node client tests will skip)"; fi

lint:
	$(VENV)/bin/ruff check src tests scripts bench
	$(VENV)/bin/ruff format --check src tests scripts bench

bench: llama-server
	$(PY) bench/chat_load.py

# llama.cpp's C++ server from the same sources, the benchmark's peer and the gateway tests' real
# remote engine: built once (6-10 min on 2 cores) into ~/.cache/faceplate/llama-server-<version>/.
llama-server: $(STAMP)
	$(PY) scripts/build_llama_server.py
