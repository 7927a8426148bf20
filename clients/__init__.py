"""Typed Python clients of acecoder's services."""

from .executor import AsyncExecutorClient, ExecutorClient, Program
from .base import RetryPolicy
from .reward import AsyncRewardClient, RewardClient
from .synthesis import SynthesisClient

__all__ = ["AsyncExecutorClient", "AsyncRewardClient", "ExecutorClient", "Program",
           "RetryPolicy", "RewardClient", "SynthesisClient"]
