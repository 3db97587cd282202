"""The retry policy of one attempt: which tries tenacity repeats, how long it waits, when it stops.

Kept apart from the client so the policy reads in one place: full-jitter exponential
backoff, a worker's ``Retry-After`` honoured up to the maximum backoff, only retryable
failures retried (protocol §10), and always a stop: the attempt count, the deadline,
an abort or an open breaker, whichever comes first. (tenacity's default is to retry
for ever.) No ``before_sleep_log``: its exception text can quote URLs with credentials;
the client logs every try through its redactor instead.
"""

from __future__ import annotations

from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from tasks.dispatch.worker_client.config import WorkerConfig
from tasks.dispatch.worker_client.responses import TryFailed


class Backoff(wait_base):
    """Full-jitter exponential backoff; a worker's ``Retry-After`` is a floor, capped at the maximum backoff.

    The wait before try ``n`` is uniform in ``[0, min(initial * 2**(n-2), max)]``. The cap
    on ``Retry-After`` keeps a worker that asks for an hour from parking a dispatcher
    thread; the stop rule keeps any wait from reaching past the deadline.
    """

    def __init__(self, config: WorkerConfig) -> None:
        self._cap_s = config.retry_max_backoff_ms / 1000
        self._jitter = wait_random_exponential(multiplier=config.retry_initial_backoff_ms / 1000, max=self._cap_s)

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = self._jitter(retry_state)
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, TryFailed) and failure.retry_after_s is not None:
            wait = max(wait, min(failure.retry_after_s, self._cap_s))
        return wait


class StopWhen(stop_base):
    def __init__(self, predicate: Callable[[RetryCallState], bool]) -> None:
        self._predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._predicate(retry_state)


def _retry_worthy(exc: BaseException) -> bool:
    return isinstance(exc, TryFailed) and exc.retryable


def retrying(
    config: WorkerConfig, *, stop_early: Callable[[RetryCallState], bool], sleep: Callable[[float], object]
) -> Retrying:
    """A tenacity controller for one attempt.

    ``stop_early`` sees the upcoming wait (tenacity computes it before asking to stop), so
    it can refuse a wait that would end past the deadline. ``sleep`` is the attempt's abort
    handle, so an abort ends a backoff at once. ``reraise``: the caller gets the last
    try's own exception, not tenacity's ``RetryError``.
    """
    return Retrying(
        stop=stop_after_attempt(config.retry_max_attempts) | StopWhen(stop_early),
        wait=Backoff(config),
        retry=retry_if_exception(_retry_worthy),
        sleep=sleep,
        reraise=True,
    )
