"""Typed Python clients of acecoder's services."""

from .executor import AsyncExecutorClient, ExecutorClient, Program, RetryPolicy

__all__ = ["AsyncExecutorClient", "ExecutorClient", "Program", "RetryPolicy"]
