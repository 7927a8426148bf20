#!/usr/bin/env bash
# Scratch virtualenvs for SandboxFusion's own server, for bench/stdio_bench.py (never `make test`).
#
# Usage: bench/sandboxfusion_setup.sh SF_TREE VENV_DIR
#   SF_TREE   a source tree of bytedance/SandboxFusion (measured at commit 469de08)
#   VENV_DIR  a scratch directory; made here, idempotently:
#     VENV_DIR/server   the server's virtualenv, SandboxFusion's main dependencies pinned
#     VENV_DIR/runtime  a plain virtualenv the Python programs run in (SandboxFusion's conda
#                       env "sandbox-runtime"), found through a shim: an empty condabin/
#                       beside server/bin/ and two lines in server/bin/activate
#     VENV_DIR/home     an empty HOME for the server, so `bash -c` sources no ~/.bashrc
# PYTHON (default python3, a 3.11) makes both virtualenvs. Then:
#   python bench/stdio_bench.py --sandboxfusion SF_TREE --sf-venv VENV_DIR
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 SF_TREE VENV_DIR" >&2
    exit 2
fi
SF=$(cd "$1" && pwd)
if [ ! -f "$SF/sandbox/server/server.py" ]; then
    echo "$SF is not a SandboxFusion source tree (no sandbox/server/server.py)" >&2
    exit 2
fi
mkdir -p "$2"
VENV=$(cd "$2" && pwd)
PYTHON=${PYTHON:-python3}

# The pins SandboxFusion's poetry.lock resolves to for its main group, as measured to start.
PINS=(
    "pydantic==2.6.4" "fastapi==0.103.2" "uvicorn[standard]==0.25.0" "structlog==23.3.0"
    "psutil==5.9.8" "aiofiles==23.2.1" "aiohttp==3.10.6" "tenacity==8.5.0"
    "databases[aiomysql,aiosqlite]==0.9.0" "sqlalchemy==2.0.35" "transformers==4.45.0"
    "pyyaml==6.0.2"
)

# 1. The server mounts docs/build as static files and will not start without it.
mkdir -p "$SF/docs/build"

# 2. The server's virtualenv; the stamp records the pins it was made with.
STAMP="$VENV/server/.acecoder-bench-pins"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "${PINS[*]}" ]; then
    [ -x "$VENV/server/bin/python" ] || "$PYTHON" -m venv "$VENV/server"
    "$VENV/server/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
    echo "${PINS[*]}" > "$STAMP"
fi

# 3. The "conda" shim: SandboxFusion's Python runner looks for condabin/ above its interpreter
#    and runs `source <root>/bin/activate sandbox-runtime && which python`.
[ -x "$VENV/runtime/bin/python" ] || "$PYTHON" -m venv --without-pip "$VENV/runtime"
mkdir -p "$VENV/server/condabin"
MARK="# acecoder bench: sandbox-runtime shim"
if ! grep -qF "$MARK" "$VENV/server/bin/activate"; then
    cat >> "$VENV/server/bin/activate" <<EOF
$MARK
if [ "\${1:-}" = "sandbox-runtime" ]; then PATH="$VENV/runtime/bin:\$PATH"; export PATH; hash -r 2>/dev/null || true; fi
EOF
fi

# 4. An empty HOME.
mkdir -p "$VENV/home"

"$VENV/server/bin/python" -c "import fastapi, uvicorn, structlog, databases, transformers" \
    2>/dev/null || { echo "the server virtualenv does not import; remove $VENV/server" >&2; exit 1; }
echo "SandboxFusion virtualenvs ready in $VENV (server, runtime, home)"
