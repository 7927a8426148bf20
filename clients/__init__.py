"""Typed Python clients of acecoder's services."""

from acecoder.security import ClientSecurity

from .base import RetryPolicy
from .executor import AsyncExecutorClient, CallTest, CallTests, ExecutorClient, Program, StdioTest
from .rm import AsyncRewardClient, RewardClient
from .synthesis import SynthesisClient

__all__ = ["AsyncExecutorClient", "AsyncRewardClient", "CallTest", "CallTests", "ClientSecurity",
           "ExecutorClient", "Program", "RetryPolicy", "RewardClient", "StdioTest",
           "SynthesisClient"]
