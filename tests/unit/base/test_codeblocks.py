from __future__ import annotations

import pytest

from acecoder.codeblocks import extract_program


@pytest.mark.parametrize(("response", "program"), [
    pytest.param("def f(): return 1\n", "def f(): return 1\n", id="bare"),
    pytest.param("Here:\n```python\ndef f(): return 1\n```\nDone.", "def f(): return 1\n",
                 id="fenced"),
    pytest.param("```\nx = 1\n```", "x = 1\n", id="untagged"),
    pytest.param("```python\na = 1\n```\nbetter:\n```py\na = 2\n```", "a = 2\n", id="last-wins"),
    pytest.param("```python\nok = 1\n```\n```bash\nls\n```", "ok = 1\n", id="python-over-other"),
    pytest.param("```js\nlet a\n```", "let a\n", id="only-other-language"),
    pytest.param("```python\ndef f():\n    return", "def f():\n    return", id="unclosed"),
])
def test_extract_program(response: str, program: str) -> None:
    assert extract_program(response) == program
