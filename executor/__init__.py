"""Sandboxed test execution: program + assert tests -> per-test verdicts.

The public Python API is :class:`acecoder.executor.pool.WorkerPool` (async) and
:class:`acecoder.executor.local.LocalExecutor` (blocking); the gRPC service lives in
``servicer``/``main``. Nothing here imports grpc except those two modules.
"""
