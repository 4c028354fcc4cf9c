# One command to install, one to test. `make install` works on a fresh machine of this kind.
VENV ?= .venv
PY := $(VENV)/bin/python
# llama.cpp is built for a portable x86-64 baseline (AVX2/FMA/F16C, no AVX-512, no AMX):
# these machines run on Intel CPUs with AMX (whose kernels die with SIGILL under a native
# build) and on AMD CPUs without AVX-512 (where an AVX-512 build dies with SIGILL), and pip's
# wheel cache would carry a CPU-specific build from one to the other.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

.PHONY: install test test-fast lint bench

install:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install -e '.[dev]'
	if command -v npm >/dev/null; then npm ci --prefix tests/node --no-audit --no-fund; fi

test:
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not e2e and not services"

lint:
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

bench:
	$(PY) bench/chat_load.py
