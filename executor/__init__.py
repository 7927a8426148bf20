"""Sandboxed test execution: program + assert tests -> per-test verdicts.

Python API: `acecoder.executor.pool.WorkerPool` (asyncio; `async with WorkerPool(config) as
pool: await pool.execute(validate(config, program=..., tests=[...]))`). The gRPC service is
`servicer`/`main`; the offline CLI is `offline`. Only `servicer` and `main` import grpc.
"""
