"""How a stdio test's output is compared with the expected output, on the trusted side.

A checker is named by a string (the `acecoder exec` contract and the gRPC `checker` field):

* ``tokens`` (the default): the same whitespace-separated tokens, in order;
* ``exact``: byte for byte;
* ``lines``: the same lines, trailing whitespace of each line and trailing empty lines ignored;
* ``float:TOL``: tokens, numbers within TOL absolutely *or* relatively (as Codeforces judges
  real-valued answers: |got - want| <= TOL * max(1, |want|)); ``float_abs:TOL`` and
  ``float_rel:TOL`` use only one of the two. Tokens that are not both numbers must be equal;
* ``custom``: a checker program sent with the request (Python), run by stdio.py as untrusted
  code in a confined process of its own after the program's run has ended: it gets the paths
  of the input, the program's output and the expected output as its arguments (testlib's
  order) and its exit status is the verdict: 0 accepted, 1 or 2 wrong answer (testlib's WA and
  PE), anything else a checker failure.

Each runs in time linear in its inputs, whatever they hold (the output is the program's). The
worker runs them: the expected output never leaves it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NAMES = ("tokens", "exact", "lines", "float", "float_abs", "float_rel", "custom")


@dataclass(frozen=True)
class Checker:
    kind: str = "tokens"
    tol: float = 0.0

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.tol!r}" if self.kind.startswith("float") else self.kind

    def __call__(self, want: str, got: str) -> bool:
        if self.kind == "exact":
            return got == want
        if self.kind == "lines":
            return _lines(got) == _lines(want)
        if self.kind == "tokens":
            return got.split() == want.split()
        if self.kind == "custom":
            raise ValueError("a custom checker is a program: stdio.py runs it")
        return _floats(want.split(), got.split(), self.kind, self.tol)


def parse(spec: str) -> Checker:
    """A checker from its name; ValueError says what is accepted."""
    kind, _, tol = spec.strip().partition(":")
    if kind not in NAMES:
        raise ValueError(
            f"unknown checker {spec[:40]!r}: use tokens, exact, lines, float:TOL, float_abs:TOL, "
            "float_rel:TOL or custom (with the checker's source)")
    if not kind.startswith("float"):
        if tol:
            raise ValueError(f"checker {kind} takes no tolerance (got {spec[:40]!r})")
        return Checker(kind)
    try:
        value = float(tol) if tol else 1e-6
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and 0 <= value < 1):
        raise ValueError(
            f"checker {spec[:40]!r}: the tolerance must be a number in [0, 1), e.g. float:1e-6")
    return Checker(kind, value)


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _number(token: str) -> float | None:
    if len(token) > 400:  # no number has that many characters; float() of it is still linear
        return None
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _floats(want: list[str], got: list[str], kind: str, tol: float) -> bool:
    if len(want) != len(got):
        return False
    for w, g in zip(want, got):
        if w == g:
            continue
        a, b = _number(w), _number(g)
        if a is None or b is None:
            return False
        err = abs(a - b)
        absolute = err <= tol + 1e-15
        relative = err <= tol * abs(a) + 1e-15
        ok = {"float": absolute or relative, "float_abs": absolute, "float_rel": relative}[kind]
        if not ok:
            return False
    return True
