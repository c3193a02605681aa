# dedupd developer entry points. Everything installs into ./.venv; nothing is needed beforehand
# but python3 (3.11+) with venv, and the package index.
VENV    ?= .venv
PY      := $(VENV)/bin/python
DEDUPD  := $(VENV)/bin/dedupd
EXTRAS  ?= cnn,offline-model,test
DEMO    ?= .demo

.PHONY: run demo test test-fast stress lint bench install clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	# build every resize kernel into numba's cache now (~4 s here) rather than in the decoders' server
	$(PY) -c 'from dedupd import resample; resample.build_all()'
	touch $@

install: $(VENV)/.installed

## run: set up, generate a demo folder from the shared corpus, start the daemon on it, show duplicates
run demo: $(VENV)/.installed
	$(PY) -m dedupd.demo --dir $(DEMO)

## test: the whole test suite (what CI runs)
test: $(VENV)/.installed
	$(PY) -m pytest

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow and not stress"

## stress: the fault-injection and abuse suites at full size (kill -9, event storms, fuzzing, socket abuse)
stress: $(VENV)/.installed
	$(PY) -m pytest -m stress -v -s

## lint: ruff on everything, mypy on the core, the daemon, the reports and the engines
lint: $(VENV)/.installed
	$(PY) -m ruff check dedupd tests bench tools
	$(PY) -m mypy dedupd/core dedupd/daemon dedupd/reports dedupd/engines

bench: $(VENV)/.installed
	$(PY) bench/bench_library.py
	$(PY) bench/bench_query.py
	$(PY) bench/quality.py

## man, completion: the manual page and shell completions, generated from the CLI's parser (into build/)
.PHONY: man completion
man: $(VENV)/.installed
	mkdir -p build
	$(PY) -m dedupd manpage > build/dedupd.1

completion: $(VENV)/.installed
	mkdir -p build/completion
	$(PY) -m dedupd completion bash > build/completion/dedupd.bash
	$(PY) -m dedupd completion zsh > build/completion/_dedupd

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info
