from __future__ import annotations

from pathlib import Path

from acecoder.jsonl import done_ids


def test_done_ids_drops_a_torn_last_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "pass')
    assert done_ids(out) == {"a", "b"}
    assert out.read_text() == '{"id": "a"}\n{"id": "b"}\n'
    assert done_ids(tmp_path / "missing.jsonl") == set()
