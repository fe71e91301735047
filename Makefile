# wacrypto: two commands do all the set-up on a fresh machine:
#   make demo   -- end-to-end demo on the embedded SQLite default
#   make test   -- type check, the whole test suite (all store backends, interop peers), short fuzz runs
# Each creates its own virtualenv (.venv) and installs what it needs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FUZZ_RUNS ?= 2000

.PHONY: all venv demo test typecheck pytest fuzz interop-setup soak bench proto clean

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
soak: venv
	$(BIN)/python tests/soak/soak_harness.py

typecheck: venv
	$(BIN)/mypy

pytest: venv interop-setup
	$(BIN)/python -m pytest

fuzz: venv
	@set -e; for f in fuzz/fuzz_*.py; do \
		echo "fuzz: $$f ($(FUZZ_RUNS) runs)"; \
		$(BIN)/python $$f -runs=$(FUZZ_RUNS) -print_final_stats=0 >/dev/null 2>fuzz/.last.log || { cat fuzz/.last.log; exit 1; }; \
	done; rm -f fuzz/.last.log

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
