# One command to install, one to test. `make install` works on a fresh machine of this kind.
VENV ?= .venv
PY := $(VENV)/bin/python
# llama.cpp's native build runs AMX kernels that die with SIGILL on these CPUs; build for
# AVX-512 without AMX instead (the engine also keeps weights out of AMX buffers at run time).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

.PHONY: install test test-fast lint bench

install:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install -e '.[dev]'

test:
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -m "not e2e and not services"

lint:
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

bench:
	$(PY) bench/chat_load.py
