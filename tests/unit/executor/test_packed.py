"""ExecuteBatchChunked's messages: runs of results under a byte budget, in order."""

from __future__ import annotations

from acecoder.executor.servicer import CHUNK_BYTES, packed
from acecoder.v1 import executor_pb2 as pb


def result(i: int, size: int) -> pb.ExecuteResponse:
    return pb.ExecuteResponse(index=i, stdout="x" * size)


def test_runs_keep_the_order_and_stay_under_the_budget() -> None:
    messages = [result(i, size) for i, size in enumerate([10, 300, 40, 500, 5, 5, 900, 1])]
    runs = list(packed(messages, budget=1000))
    assert [m.index for run in runs for m in run] == list(range(8))  # each once, in order
    assert all(sum(m.ByteSize() for m in run) <= 1000 for run in runs)
    # a run closes only when the next message would not fit
    for run, after in zip(runs, runs[1:]):
        assert sum(m.ByteSize() for m in run) + after[0].ByteSize() > 1000


def test_a_message_over_the_budget_goes_alone() -> None:
    runs = list(packed([result(0, 5), result(1, 5000), result(2, 5)], budget=1000))
    assert [[m.index for m in run] for run in runs] == [[0], [1], [2]]


def test_small_results_share_one_message_and_nothing_makes_none() -> None:
    assert [len(run) for run in packed([result(i, 100) for i in range(50)])] == [50]
    assert list(packed([])) == []
    assert CHUNK_BYTES == 4 << 20
