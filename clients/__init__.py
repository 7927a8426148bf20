"""Typed Python clients of acecoder's services."""

from .executor import AsyncExecutorClient, ExecutorClient, Program
from .base import RetryPolicy
from .reward import AsyncRewardClient, RewardClient
from .synthesis import SynthesisClient
from acecoder.security import ClientSecurity

__all__ = ["AsyncExecutorClient", "AsyncRewardClient", "ClientSecurity", "ExecutorClient", "Program",
           "RetryPolicy", "RewardClient", "SynthesisClient"]
