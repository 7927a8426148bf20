from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScoreItem(_message.Message):
    __slots__ = ("question", "response", "id")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    question: bytes
    response: bytes
    id: str
    def __init__(self, question: _Optional[bytes] = ..., response: _Optional[bytes] = ..., id: _Optional[str] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("request_id", "items")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    items: _containers.RepeatedCompositeFieldContainer[ScoreItem]
    def __init__(self, request_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ScoreItem, _Mapping]]] = ...) -> None: ...

class ItemScore(_message.Message):
    __slots__ = ("id", "score", "truncated", "tokens", "probability")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    truncated: bool
    tokens: int
    probability: float
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., truncated: _Optional[bool] = ..., tokens: _Optional[int] = ..., probability: _Optional[float] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("request_id", "scores")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    scores: _containers.RepeatedCompositeFieldContainer[ItemScore]
    def __init__(self, request_id: _Optional[str] = ..., scores: _Optional[_Iterable[_Union[ItemScore, _Mapping]]] = ...) -> None: ...

class RerankRequest(_message.Message):
    __slots__ = ("request_id", "question", "candidates", "tests", "test_timeout_seconds", "setup", "budget_seconds")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    TEST_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SETUP_FIELD_NUMBER: _ClassVar[int]
    BUDGET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    question: bytes
    candidates: _containers.RepeatedScalarFieldContainer[bytes]
    tests: _containers.RepeatedScalarFieldContainer[bytes]
    test_timeout_seconds: float
    setup: bytes
    budget_seconds: float
    def __init__(self, request_id: _Optional[str] = ..., question: _Optional[bytes] = ..., candidates: _Optional[_Iterable[bytes]] = ..., tests: _Optional[_Iterable[bytes]] = ..., test_timeout_seconds: _Optional[float] = ..., setup: _Optional[bytes] = ..., budget_seconds: _Optional[float] = ...) -> None: ...

class RankedCandidate(_message.Message):
    __slots__ = ("index", "score", "truncated", "pass_rate", "rank", "verdicts")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    PASS_RATE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    index: int
    score: float
    truncated: bool
    pass_rate: float
    rank: int
    verdicts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, index: _Optional[int] = ..., score: _Optional[float] = ..., truncated: _Optional[bool] = ..., pass_rate: _Optional[float] = ..., rank: _Optional[int] = ..., verdicts: _Optional[_Iterable[str]] = ...) -> None: ...

class RerankResponse(_message.Message):
    __slots__ = ("request_id", "ranked", "rule", "complete", "seconds")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RANKED_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    ranked: _containers.RepeatedCompositeFieldContainer[RankedCandidate]
    rule: str
    complete: bool
    seconds: float
    def __init__(self, request_id: _Optional[str] = ..., ranked: _Optional[_Iterable[_Union[RankedCandidate, _Mapping]]] = ..., rule: _Optional[str] = ..., complete: _Optional[bool] = ..., seconds: _Optional[float] = ...) -> None: ...

class ModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfoResponse(_message.Message):
    __slots__ = ("version", "model_id", "format", "backend", "dtype", "max_length", "head_trained", "architecture", "device", "warning", "calibrated", "calibration_scale", "calibration_shift", "calibration_method", "calibration_brier_before", "calibration_brier_after")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    HEAD_TRAINED_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_SCALE_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_SHIFT_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_METHOD_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_BRIER_BEFORE_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_BRIER_AFTER_FIELD_NUMBER: _ClassVar[int]
    version: str
    model_id: str
    format: str
    backend: str
    dtype: str
    max_length: int
    head_trained: bool
    architecture: str
    device: str
    warning: str
    calibrated: bool
    calibration_scale: float
    calibration_shift: float
    calibration_method: str
    calibration_brier_before: float
    calibration_brier_after: float
    def __init__(self, version: _Optional[str] = ..., model_id: _Optional[str] = ..., format: _Optional[str] = ..., backend: _Optional[str] = ..., dtype: _Optional[str] = ..., max_length: _Optional[int] = ..., head_trained: _Optional[bool] = ..., architecture: _Optional[str] = ..., device: _Optional[str] = ..., warning: _Optional[str] = ..., calibrated: _Optional[bool] = ..., calibration_scale: _Optional[float] = ..., calibration_shift: _Optional[float] = ..., calibration_method: _Optional[str] = ..., calibration_brier_before: _Optional[float] = ..., calibration_brier_after: _Optional[float] = ...) -> None: ...
