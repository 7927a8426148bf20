"""The committed gRPC stubs are what scripts/gen_proto.py makes from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_generated_stubs_are_fresh() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_executor_imports_without_grpc_or_torch() -> None:
    code = ("import sys\nimport acecoder.executor.sandbox.worker, acecoder.executor.service\n"
            "assert 'grpc' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
