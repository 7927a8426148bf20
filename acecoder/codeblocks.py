"""Finding the program in a model's response: the last fenced Python block, else the text."""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_PYTHON = {"", "python", "py", "python3"}


def extract_program(response: str) -> str:
    """The code a response carries: the last fenced block tagged Python (or untagged);
    failing that, the last fenced block of any language; failing that, the whole response
    (a bare program). An unclosed final fence (a truncated generation) still counts."""
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(response)]
    if not blocks:
        return response
    python = [code for lang, code in blocks if lang in _PYTHON]
    return (python or [blocks[-1][1]])[-1]
