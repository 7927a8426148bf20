# acecoder: `make test` and `make demo` set everything up from a fresh clone.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: test demo bench proto proto-check sysdeps clean

# The venv, with acecoder installed editable and everything the tests need.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "acecoder needs $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Sandboxing tools from Debian, when run as root and they are missing (the executor falls
# back to bare namespaces without them, but the tests exercise all three jails).
sysdeps:
	@if [ "$$(id -u)" = 0 ] && { ! command -v firejail >/dev/null || ! command -v bwrap >/dev/null; }; then \
		echo "installing firejail and bubblewrap"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends firejail bubblewrap >/dev/null; \
	fi

test: sysdeps $(STAMP)
	$(PY) -m pytest -q

demo: sysdeps $(STAMP)
	$(VENV)/bin/acecoder demo --workers 2

bench: sysdeps $(STAMP)
	$(PY) bench/executor_bench.py

proto: $(STAMP)
	$(PY) scripts/gen_proto.py

proto-check: $(STAMP)
	$(PY) scripts/gen_proto.py --check

clean:
	rm -rf $(VENV) build *.egg-info
