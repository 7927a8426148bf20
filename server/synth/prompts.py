"""Stage 1's prompts: rewrite a seed into a well-posed problem and imagine its tests.

Two variants: from a question with a reference program, and from a program alone. Both ask
for one JSON object {"question": ..., "tests": [...]}, tests being single assert statements
with constant inputs and outputs that call the one function the question defines.
"""

from __future__ import annotations

SYSTEM = ("You write programming exercises and their unit tests. You answer with one JSON "
          "object and nothing else.")

_RULES = """\
Rewrite it as a self-contained, LeetCode-style problem that asks for exactly ONE Python
function, and state that function's name and parameters in the problem text. Then write about
{n} independent tests for it. Rules for the tests:
- each test is ONE line: an `assert` statement calling the function with constant arguments and
  comparing the result with a constant expected value;
- no imports, no printing, no files, no randomness, no helper functions;
- cover ordinary cases, edge cases (empty inputs, zero, negative numbers, single elements) and
  a few larger inputs; no two tests alike.
Answer with JSON only, in this form:
{{"question": "<the rewritten problem>", "tests": ["assert ...", "assert ..."]}}"""


def with_reference(question: str, program: str, n: int = 20) -> list[dict[str, str]]:
    """Messages for a seed question that comes with a reference program."""
    user = (f"Here is a coding question and a program that answers it.\n\n"
            f"Question:\n{question.strip()}\n\nProgram:\n```python\n{program.strip()}\n```\n\n"
            + _RULES.format(n=n)
            + "\nThe tests must hold for the program above (it is correct).")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def program_only(program: str, n: int = 20) -> list[dict[str, str]]:
    """Messages for a seed that is a program without a question."""
    user = (f"Here is a Python program.\n\n```python\n{program.strip()}\n```\n\n"
            "Work out what its main function does and write the question it answers. "
            + _RULES.format(n=n)
            + "\nThe tests must hold for the program above.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def proxy(question: str, tests: list[str]) -> list[dict[str, str]]:
    """Messages asking the proxy model for one solution, shown the first two tests (as
    AceCoder prompts its proxy)."""
    shown = "\n".join(tests[:2])
    user = (f"{question.strip()}\n\nYour function must pass tests like these:\n"
            f"```python\n{shown}\n```\n\nAnswer with the complete Python solution in one "
            "```python code block.")
    return [{"role": "user", "content": user}]
