"""The worker client: how the dispatcher talks to workers over worker protocol v1 (docs/worker-protocol.md).

- ``config``: :class:`WorkerConfig`, the snapshot of a Worker row the client works from;
- ``client``: :class:`WorkerClient` (execute with tenacity retries inside the worker's
  circuit breaker, cancel, health) and :class:`AttemptOutcome`;
- ``responses``: JSON and NDJSON answers turned into results, statuses into retry decisions;
- ``transport``: per-thread sessions whose sockets an :class:`AbortHandle` can shut down;
- ``redaction``: keeping tokens and URL credentials out of every log line and record.

The breakers themselves live in ``tasks.dispatch.breakers``.
"""

from tasks.dispatch.worker_client.client import AttemptOutcome, WorkerClient
from tasks.dispatch.worker_client.config import WorkerConfig
from tasks.dispatch.worker_client.transport import AbortHandle

__all__ = ["AbortHandle", "AttemptOutcome", "WorkerClient", "WorkerConfig"]
