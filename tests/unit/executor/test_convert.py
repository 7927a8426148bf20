"""Results cross the gRPC contract unchanged, every status and verdict by its own number."""

from __future__ import annotations

import pytest

from acecoder.executor import convert
from acecoder.executor.types import ExecutionResult, ProgramStatus, Verdict
from acecoder.executor.types import TestResult as Outcome
from acecoder.v1 import executor_pb2 as pb


@pytest.mark.parametrize("status", list(ProgramStatus))
def test_every_status_and_verdict_round_trips_by_the_proto_s_own_numbers(
        status: ProgramStatus) -> None:
    result = ExecutionResult(
        request_id="r", status=status, index=7, jail="firejail", flags=("FORGED_OUTPUT",),
        tests=tuple(Outcome(verdict=v, duration=0.5, error_type="E", error_message="m",
                               cpu_seconds=0.25, peak_memory_kb=3, exit_code=1)
                    for v in Verdict))
    message = convert.result_to_proto(result)
    assert message.status == pb.ProgramStatus.Value(status.value)
    assert [t.verdict for t in message.results] == [pb.Verdict.Value(v.value) for v in Verdict]
    back = convert.result_from_proto(pb.ExecuteResponse.FromString(message.SerializeToString()))
    assert back == result


def test_a_number_the_contract_does_not_define_is_refused() -> None:
    message = pb.ExecuteResponse(status=99, results=[pb.TestResult(verdict=1)])
    with pytest.raises(ValueError):
        convert.result_from_proto(message)
    message = pb.ExecuteResponse(status=0, results=[pb.TestResult(verdict=98)])
    with pytest.raises(ValueError):
        convert.result_from_proto(message)
