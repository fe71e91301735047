# wacrypto: two commands do all the set-up on a fresh machine:
#   make demo   -- end-to-end demo on the embedded SQLite default
#   make test   -- type check, the whole test suite (all store backends, interop peers), short fuzz runs
# Each creates its own virtualenv (.venv) and installs what it needs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FUZZ_RUNS ?= 2000
# Per harness: FUZZ_RUNS_<harness> overrides FUZZ_RUNS (e.g. make fuzz FUZZ_RUNS_fuzz_differential=500).
# Every harness runs on its generated seed corpus (fuzz/corpus/<harness>, fuzz/make_corpora.py) with its
# dictionary (fuzz/dict/<harness>.dict); new inputs go to fuzz/corpus-run/<harness>, crashes to
# fuzz/artifacts/<harness>/. Long campaigns: docs/fuzzing.md.
FUZZ_HARNESSES = $(basename $(notdir $(wildcard fuzz/fuzz_*.py)))
fuzz_runs = $(or $(FUZZ_RUNS_$(1)),$(FUZZ_RUNS))
fuzz_dict = $(if $(wildcard fuzz/dict/$(1).dict),-dict=fuzz/dict/$(1).dict)

.PHONY: all venv demo test typecheck pytest fuzz fuzz-long interop-setup soak bench proto clean

# Benchmark-only peer: Baileys' pure-JS libsignal (npm `libsignal`, exact pins in package-lock.json).
BAILEYS := bench/peers/baileys
BAILEYS_STAMP := $(BAILEYS)/node_modules/.make-stamp

all: test

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-input -q --upgrade pip
	$(BIN)/python -m pip install --no-input -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/wacrypto demo

interop-setup:
	bash tests/interop/setup.sh

# The long chaos soak (docs/soak.md): chatd and 4 client processes, SIGKILLs, cut and stalled connections,
# SQLite then PostgreSQL stores; parameters are SOAK_* variables, e.g. make soak SOAK_STORE=sqlite SOAK_SECONDS=120
# (SOAK_STORE=postgresql SOAK_STRIPES=2: with one device served by two stripe workers, scale-out)
soak: venv
	$(BIN)/python tests/soak/soak_harness.py

typecheck: venv
	$(BIN)/mypy

pytest: venv interop-setup
	$(BIN)/python -m pytest

# interop-setup: fuzz_differential compares wacrypto with python-axolotl (.venv-axolotl)
fuzz: venv interop-setup
	$(BIN)/python fuzz/make_corpora.py
	@set -e; $(foreach h,$(FUZZ_HARNESSES),\
		echo "fuzz: fuzz/$(h).py ($(call fuzz_runs,$(h)) runs)"; \
		rm -rf fuzz/corpus-run/$(h); mkdir -p fuzz/corpus-run/$(h) fuzz/artifacts/$(h); \
		$(BIN)/python fuzz/$(h).py -runs=$(call fuzz_runs,$(h)) $(call fuzz_dict,$(h)) -print_final_stats=0 \
			-artifact_prefix=fuzz/artifacts/$(h)/ fuzz/corpus-run/$(h) fuzz/corpus/$(h) \
			>/dev/null 2>fuzz/.last.log || { cat fuzz/.last.log; exit 1; };) rm -f fuzz/.last.log

# One harness for a long time, FUZZ_JOBS processes on one growing corpus (docs/fuzzing.md):
#   make fuzz-long FUZZ_HARNESS=fuzz_wire FUZZ_TIME=14400 FUZZ_JOBS=4
FUZZ_HARNESS ?= fuzz_differential
FUZZ_TIME ?= 3600
FUZZ_JOBS ?= 1
fuzz-long: venv interop-setup
	$(BIN)/python fuzz/make_corpora.py $(FUZZ_HARNESS)
	mkdir -p fuzz/corpus-long/$(FUZZ_HARNESS) fuzz/artifacts/$(FUZZ_HARNESS)
	cd fuzz/artifacts/$(FUZZ_HARNESS) && FUZZ_HARNESS=$(FUZZ_HARNESS) PYTHON=$(CURDIR)/$(BIN)/python $(CURDIR)/fuzz/run \
		-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS) -max_total_time=$(FUZZ_TIME) \
		$(if $(wildcard fuzz/dict/$(FUZZ_HARNESS).dict),-dict=$(CURDIR)/fuzz/dict/$(FUZZ_HARNESS).dict) \
		-artifact_prefix=$(CURDIR)/fuzz/artifacts/$(FUZZ_HARNESS)/ \
		$(CURDIR)/fuzz/corpus-long/$(FUZZ_HARNESS) $(CURDIR)/fuzz/corpus/$(FUZZ_HARNESS)

test: typecheck pytest fuzz

# Re-runs npm ci only when package.json / package-lock.json change or node_modules is gone.
# --ignore-scripts: the only install script (protobufjs postinstall) is a version-scheme warning.
$(BAILEYS_STAMP): $(BAILEYS)/package.json $(BAILEYS)/package-lock.json
	npm ci --prefix $(BAILEYS) --ignore-scripts --no-audit --no-fund
	@touch $@

bench: venv $(BAILEYS_STAMP)
	bash tests/interop/setup.sh --axolotl-cpp
	$(BIN)/python bench/run_all.py

proto: venv
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=wacrypto/_proto --pyi_out=wacrypto/_proto proto/*.proto

clean:
	rm -rf $(VENV) .venv-axolotl* tests/interop/node/node_modules $(BAILEYS)/node_modules demo-data .mypy_cache .pytest_cache .hypothesis
