from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    PASSED: _ClassVar[Verdict]
    FAILED: _ClassVar[Verdict]
    ERROR: _ClassVar[Verdict]
    TIMEOUT: _ClassVar[Verdict]
    MEMORY: _ClassVar[Verdict]
    CRASHED: _ClassVar[Verdict]
    SKIPPED: _ClassVar[Verdict]

class ProgramStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROGRAM_STATUS_UNSPECIFIED: _ClassVar[ProgramStatus]
    OK: _ClassVar[ProgramStatus]
    SYNTAX_ERROR: _ClassVar[ProgramStatus]
    LOAD_ERROR: _ClassVar[ProgramStatus]
    EXITED_EARLY: _ClassVar[ProgramStatus]
    LOAD_TIMEOUT: _ClassVar[ProgramStatus]
    LOAD_MEMORY: _ClassVar[ProgramStatus]
    LOAD_CRASHED: _ClassVar[ProgramStatus]
    SETUP_ERROR: _ClassVar[ProgramStatus]
    COMPILE_ERROR: _ClassVar[ProgramStatus]
VERDICT_UNSPECIFIED: Verdict
PASSED: Verdict
FAILED: Verdict
ERROR: Verdict
TIMEOUT: Verdict
MEMORY: Verdict
CRASHED: Verdict
SKIPPED: Verdict
PROGRAM_STATUS_UNSPECIFIED: ProgramStatus
OK: ProgramStatus
SYNTAX_ERROR: ProgramStatus
LOAD_ERROR: ProgramStatus
EXITED_EARLY: ProgramStatus
LOAD_TIMEOUT: ProgramStatus
LOAD_MEMORY: ProgramStatus
LOAD_CRASHED: ProgramStatus
SETUP_ERROR: ProgramStatus
COMPILE_ERROR: ProgramStatus

class ExecuteRequest(_message.Message):
    __slots__ = ("request_id", "program", "tests", "setup", "timeout_seconds", "memory_limit_mb", "stop_on_first_failure", "stdio_tests", "checker", "output_limit_bytes", "language", "fn_name", "call_tests", "compile_timeout_seconds", "checker_source")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    SETUP_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_MB_FIELD_NUMBER: _ClassVar[int]
    STOP_ON_FIRST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    STDIO_TESTS_FIELD_NUMBER: _ClassVar[int]
    CHECKER_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    FN_NAME_FIELD_NUMBER: _ClassVar[int]
    CALL_TESTS_FIELD_NUMBER: _ClassVar[int]
    COMPILE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CHECKER_SOURCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    program: bytes
    tests: _containers.RepeatedScalarFieldContainer[bytes]
    setup: bytes
    timeout_seconds: float
    memory_limit_mb: int
    stop_on_first_failure: bool
    stdio_tests: _containers.RepeatedCompositeFieldContainer[StdioTest]
    checker: str
    output_limit_bytes: int
    language: str
    fn_name: str
    call_tests: _containers.RepeatedCompositeFieldContainer[CallTest]
    compile_timeout_seconds: float
    checker_source: bytes
    def __init__(self, request_id: _Optional[str] = ..., program: _Optional[bytes] = ..., tests: _Optional[_Iterable[bytes]] = ..., setup: _Optional[bytes] = ..., timeout_seconds: _Optional[float] = ..., memory_limit_mb: _Optional[int] = ..., stop_on_first_failure: _Optional[bool] = ..., stdio_tests: _Optional[_Iterable[_Union[StdioTest, _Mapping]]] = ..., checker: _Optional[str] = ..., output_limit_bytes: _Optional[int] = ..., language: _Optional[str] = ..., fn_name: _Optional[str] = ..., call_tests: _Optional[_Iterable[_Union[CallTest, _Mapping]]] = ..., compile_timeout_seconds: _Optional[float] = ..., checker_source: _Optional[bytes] = ...) -> None: ...

class CallTest(_message.Message):
    __slots__ = ("input", "output")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    input: bytes
    output: bytes
    def __init__(self, input: _Optional[bytes] = ..., output: _Optional[bytes] = ...) -> None: ...

class StdioTest(_message.Message):
    __slots__ = ("input", "output")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    input: bytes
    output: bytes
    def __init__(self, input: _Optional[bytes] = ..., output: _Optional[bytes] = ...) -> None: ...

class ExecuteBatchRequest(_message.Message):
    __slots__ = ("requests", "linger_seconds")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    LINGER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[ExecuteRequest]
    linger_seconds: float
    def __init__(self, requests: _Optional[_Iterable[_Union[ExecuteRequest, _Mapping]]] = ..., linger_seconds: _Optional[float] = ...) -> None: ...

class ExecuteBatchChunk(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ExecuteResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[ExecuteResponse, _Mapping]]] = ...) -> None: ...

class TestResult(_message.Message):
    __slots__ = ("verdict", "duration_seconds", "error_type", "error_message", "cpu_seconds", "peak_memory_kb", "exit_code")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_KB_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    verdict: Verdict
    duration_seconds: float
    error_type: str
    error_message: str
    cpu_seconds: float
    peak_memory_kb: int
    exit_code: int
    def __init__(self, verdict: _Optional[_Union[Verdict, str]] = ..., duration_seconds: _Optional[float] = ..., error_type: _Optional[str] = ..., error_message: _Optional[str] = ..., cpu_seconds: _Optional[float] = ..., peak_memory_kb: _Optional[int] = ..., exit_code: _Optional[int] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ("request_id", "index", "status", "status_detail", "results", "pass_rate", "all_passed", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "duration_seconds", "jail", "flags", "compile_seconds")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_DETAIL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PASS_RATE_FIELD_NUMBER: _ClassVar[int]
    ALL_PASSED_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    STDERR_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    JAIL_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    COMPILE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    index: int
    status: ProgramStatus
    status_detail: str
    results: _containers.RepeatedCompositeFieldContainer[TestResult]
    pass_rate: float
    all_passed: bool
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    duration_seconds: float
    jail: str
    flags: _containers.RepeatedScalarFieldContainer[str]
    compile_seconds: float
    def __init__(self, request_id: _Optional[str] = ..., index: _Optional[int] = ..., status: _Optional[_Union[ProgramStatus, str]] = ..., status_detail: _Optional[str] = ..., results: _Optional[_Iterable[_Union[TestResult, _Mapping]]] = ..., pass_rate: _Optional[float] = ..., all_passed: _Optional[bool] = ..., stdout: _Optional[str] = ..., stderr: _Optional[str] = ..., stdout_truncated: _Optional[bool] = ..., stderr_truncated: _Optional[bool] = ..., duration_seconds: _Optional[float] = ..., jail: _Optional[str] = ..., flags: _Optional[_Iterable[str]] = ..., compile_seconds: _Optional[float] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("version", "jail", "workers", "max_queue", "default_timeout_seconds", "default_memory_limit_mb", "max_program_bytes", "max_tests", "languages")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    JAIL_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MEMORY_LIMIT_MB_FIELD_NUMBER: _ClassVar[int]
    MAX_PROGRAM_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TESTS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    version: str
    jail: str
    workers: int
    max_queue: int
    default_timeout_seconds: float
    default_memory_limit_mb: int
    max_program_bytes: int
    max_tests: int
    languages: _containers.RepeatedCompositeFieldContainer[Language]
    def __init__(self, version: _Optional[str] = ..., jail: _Optional[str] = ..., workers: _Optional[int] = ..., max_queue: _Optional[int] = ..., default_timeout_seconds: _Optional[float] = ..., default_memory_limit_mb: _Optional[int] = ..., max_program_bytes: _Optional[int] = ..., max_tests: _Optional[int] = ..., languages: _Optional[_Iterable[_Union[Language, _Mapping]]] = ...) -> None: ...

class Language(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...
