"""Typed Python clients of acecoder's services."""

from .executor import AsyncExecutorClient, ExecutorClient, Program, RetryPolicy
from .reward import AsyncRewardClient, RewardClient

__all__ = ["AsyncExecutorClient", "AsyncRewardClient", "ExecutorClient", "Program",
           "RetryPolicy", "RewardClient"]
