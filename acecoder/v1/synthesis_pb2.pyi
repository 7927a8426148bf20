from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_QUEUED: _ClassVar[JobState]
    JOB_RUNNING: _ClassVar[JobState]
    JOB_SUCCEEDED: _ClassVar[JobState]
    JOB_FAILED: _ClassVar[JobState]
    JOB_CANCELLED: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_QUEUED: JobState
JOB_RUNNING: JobState
JOB_SUCCEEDED: JobState
JOB_FAILED: JobState
JOB_CANCELLED: JobState

class Seed(_message.Message):
    __slots__ = ("id", "question", "program", "source", "tests")
    ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    question: str
    program: str
    source: str
    tests: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., question: _Optional[str] = ..., program: _Optional[str] = ..., source: _Optional[str] = ..., tests: _Optional[_Iterable[str]] = ...) -> None: ...

class SynthesisOptions(_message.Message):
    __slots__ = ("n_tests", "min_passed", "min_kept", "decontam_threshold", "stages", "proxy_reference", "k", "temperature")
    N_TESTS_FIELD_NUMBER: _ClassVar[int]
    MIN_PASSED_FIELD_NUMBER: _ClassVar[int]
    MIN_KEPT_FIELD_NUMBER: _ClassVar[int]
    DECONTAM_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    PROXY_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    n_tests: int
    min_passed: int
    min_kept: int
    decontam_threshold: float
    stages: _containers.RepeatedScalarFieldContainer[str]
    proxy_reference: bool
    k: int
    temperature: float
    def __init__(self, n_tests: _Optional[int] = ..., min_passed: _Optional[int] = ..., min_kept: _Optional[int] = ..., decontam_threshold: _Optional[float] = ..., stages: _Optional[_Iterable[str]] = ..., proxy_reference: _Optional[bool] = ..., k: _Optional[int] = ..., temperature: _Optional[float] = ...) -> None: ...

class SynthesizeRequest(_message.Message):
    __slots__ = ("seed", "options", "request_id")
    SEED_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    seed: Seed
    options: SynthesisOptions
    request_id: str
    def __init__(self, seed: _Optional[_Union[Seed, _Mapping]] = ..., options: _Optional[_Union[SynthesisOptions, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RejectedTest(_message.Message):
    __slots__ = ("test", "reason")
    TEST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    test: str
    reason: str
    def __init__(self, test: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class LlmCall(_message.Message):
    __slots__ = ("seconds", "prompt_tokens", "completion_tokens")
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    seconds: float
    prompt_tokens: int
    completion_tokens: int
    def __init__(self, seconds: _Optional[float] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ...) -> None: ...

class Rewritten(_message.Message):
    __slots__ = ("question", "tests", "rejected", "error", "llm")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LLM_FIELD_NUMBER: _ClassVar[int]
    question: str
    tests: _containers.RepeatedScalarFieldContainer[str]
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedTest]
    error: str
    llm: LlmCall
    def __init__(self, question: _Optional[str] = ..., tests: _Optional[_Iterable[str]] = ..., rejected: _Optional[_Iterable[_Union[RejectedTest, _Mapping]]] = ..., error: _Optional[str] = ..., llm: _Optional[_Union[LlmCall, _Mapping]] = ...) -> None: ...

class Decontaminated(_message.Message):
    __slots__ = ("clean", "benchmark", "item_id", "overlap")
    CLEAN_FIELD_NUMBER: _ClassVar[int]
    BENCHMARK_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    clean: bool
    benchmark: str
    item_id: str
    overlap: float
    def __init__(self, clean: _Optional[bool] = ..., benchmark: _Optional[str] = ..., item_id: _Optional[str] = ..., overlap: _Optional[float] = ...) -> None: ...

class ProxySolved(_message.Message):
    __slots__ = ("program", "llm")
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    LLM_FIELD_NUMBER: _ClassVar[int]
    program: str
    llm: LlmCall
    def __init__(self, program: _Optional[str] = ..., llm: _Optional[_Union[LlmCall, _Mapping]] = ...) -> None: ...

class Filtered(_message.Message):
    __slots__ = ("kept", "dropped")
    KEPT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    kept: _containers.RepeatedScalarFieldContainer[str]
    dropped: _containers.RepeatedCompositeFieldContainer[RejectedTest]
    def __init__(self, kept: _Optional[_Iterable[str]] = ..., dropped: _Optional[_Iterable[_Union[RejectedTest, _Mapping]]] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class AceCodeRecord(_message.Message):
    __slots__ = ("id", "source", "question", "test_cases", "context_messages")
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    TEST_CASES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    id: str
    source: str
    question: str
    test_cases: _containers.RepeatedScalarFieldContainer[str]
    context_messages: _containers.RepeatedCompositeFieldContainer[Message]
    def __init__(self, id: _Optional[str] = ..., source: _Optional[str] = ..., question: _Optional[str] = ..., test_cases: _Optional[_Iterable[str]] = ..., context_messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("kept", "record", "reason", "tests_in", "tests_kept")
    KEPT_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TESTS_IN_FIELD_NUMBER: _ClassVar[int]
    TESTS_KEPT_FIELD_NUMBER: _ClassVar[int]
    kept: bool
    record: AceCodeRecord
    reason: str
    tests_in: int
    tests_kept: int
    def __init__(self, kept: _Optional[bool] = ..., record: _Optional[_Union[AceCodeRecord, _Mapping]] = ..., reason: _Optional[str] = ..., tests_in: _Optional[int] = ..., tests_kept: _Optional[int] = ...) -> None: ...

class SynthesisEvent(_message.Message):
    __slots__ = ("request_id", "seconds", "rewritten", "decontaminated", "proxy", "filtered", "outcome")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    REWRITTEN_FIELD_NUMBER: _ClassVar[int]
    DECONTAMINATED_FIELD_NUMBER: _ClassVar[int]
    PROXY_FIELD_NUMBER: _ClassVar[int]
    FILTERED_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    seconds: float
    rewritten: Rewritten
    decontaminated: Decontaminated
    proxy: ProxySolved
    filtered: Filtered
    outcome: Outcome
    def __init__(self, request_id: _Optional[str] = ..., seconds: _Optional[float] = ..., rewritten: _Optional[_Union[Rewritten, _Mapping]] = ..., decontaminated: _Optional[_Union[Decontaminated, _Mapping]] = ..., proxy: _Optional[_Union[ProxySolved, _Mapping]] = ..., filtered: _Optional[_Union[Filtered, _Mapping]] = ..., outcome: _Optional[_Union[Outcome, _Mapping]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("input_path", "output_path", "options", "job_id", "kind")
    INPUT_PATH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PATH_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    input_path: str
    output_path: str
    options: SynthesisOptions
    job_id: str
    kind: str
    def __init__(self, input_path: _Optional[str] = ..., output_path: _Optional[str] = ..., options: _Optional[_Union[SynthesisOptions, _Mapping]] = ..., job_id: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "state", "input_path", "output_path", "seeds", "done", "kept", "dropped", "tests_in", "tests_kept", "tests_rejected", "error", "created", "updated", "runs", "kind", "counts")
    class DroppedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class TestsRejectedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INPUT_PATH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PATH_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    TESTS_IN_FIELD_NUMBER: _ClassVar[int]
    TESTS_KEPT_FIELD_NUMBER: _ClassVar[int]
    TESTS_REJECTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    input_path: str
    output_path: str
    seeds: int
    done: int
    kept: int
    dropped: _containers.ScalarMap[str, int]
    tests_in: int
    tests_kept: int
    tests_rejected: _containers.ScalarMap[str, int]
    error: str
    created: float
    updated: float
    runs: int
    kind: str
    counts: _containers.ScalarMap[str, int]
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., input_path: _Optional[str] = ..., output_path: _Optional[str] = ..., seeds: _Optional[int] = ..., done: _Optional[int] = ..., kept: _Optional[int] = ..., dropped: _Optional[_Mapping[str, int]] = ..., tests_in: _Optional[int] = ..., tests_kept: _Optional[int] = ..., tests_rejected: _Optional[_Mapping[str, int]] = ..., error: _Optional[str] = ..., created: _Optional[float] = ..., updated: _Optional[float] = ..., runs: _Optional[int] = ..., kind: _Optional[str] = ..., counts: _Optional[_Mapping[str, int]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...
