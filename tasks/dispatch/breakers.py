"""Circuit breakers per worker: pybreaker's state and storage, without pybreaker's call lock.

``pybreaker.CircuitBreaker.call()`` runs the wrapped function while holding the
breaker's lock, so every call to one worker in a process would wait for the one
before it. Here a call is split in two short steps instead: :meth:`WorkerBreaker.acquire`
decides, before any I/O, whether a call may go out (a :class:`Permit`), and the
permit records the outcome afterwards. Only that bookkeeping runs under a small lock
of our own; the HTTP request runs outside any lock.

pybreaker still owns the state: its storage objects (memory, or ``CircuitRedisStorage``
shared by every process when ``REDIS_URL`` is set) hold the state, the consecutive
failure counter and the time the breaker opened, and its ``open()``, ``half_open()``
and ``close()`` do the bookkeeping of each transition. What we add:

- exactly one trial call when half-open, across threads and processes: the trial is a
  lease (a Redis ``SET NX PX`` key when shared), so concurrent callers are refused and a
  trial whose process died is given to someone else when its lease runs out;
- transitions are compare-and-set (a Redis ``WATCH`` transaction when shared), so when
  two processes race to open the breaker only one reports the change;
- the listener hears the transitions this process made, in our names
  (``closed``, ``open``, ``half_open``), called outside every lock because it writes to
  the database.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import pybreaker
import redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
_OUR_NAMES = {pybreaker.STATE_CLOSED: CLOSED, pybreaker.STATE_OPEN: OPEN, pybreaker.STATE_HALF_OPEN: HALF_OPEN}

# Added to the longest a trial request can take before its verdict is known (connect plus
# read timeout): the lease must outlive a slow but healthy trial, not a dead process.
TRIAL_LEASE_MARGIN_S = 5.0
REDIS_NAMESPACE = "agency:breaker"
# A breaker store that does not answer must not hold up dispatching for long.
REDIS_SOCKET_TIMEOUT_S = 1.0

StateListener = Callable[[str, str, str], None]


class BreakerConfig(Protocol):
    """What a breaker needs from a worker's settings; ``tasks.dispatch.worker_client.WorkerConfig`` has it."""

    @property
    def name(self) -> str: ...

    @property
    def breaker_fail_max(self) -> int: ...

    @property
    def breaker_reset_timeout_s(self) -> int: ...

    @property
    def request_timeout_s(self) -> float: ...

    @property
    def connect_timeout_s(self) -> float: ...


class _SharedRedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage with a millisecond ``opened_at`` and a start-up that tolerates Redis being down.

    The stock storage keeps ``opened_at`` in whole seconds, which lets a breaker with a
    1 s reset timeout half-open almost at once; and it raises from ``__init__`` when Redis
    is unreachable, which would make every dispatch fail with it. Its getters already fall
    back to "closed" when Redis errors: a broken breaker store lets work through rather
    than stopping the fleet.
    """

    def _initialize_redis_state(self, state: str) -> None:
        try:
            super()._initialize_redis_state(state)
        except RedisError:
            logger.warning(
                "Circuit breaker store unreachable; state %s is initialised on first use.", self._namespace("")
            )

    @property
    def opened_at(self) -> datetime | None:
        try:
            value = self._redis.get(self._namespace("opened_at_ms"))
        except RedisError:
            logger.warning("Circuit breaker store unreachable reading opened_at.")
            return None
        return datetime.fromtimestamp(int(value) / 1000, UTC) if value else None

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        try:
            self._redis.set(self._namespace("opened_at_ms"), int(now.timestamp() * 1000))
        except RedisError:
            logger.warning("Circuit breaker store unreachable writing opened_at.")


class _LocalCoordination:
    """Trial lease and compare-and-set for one process; our lock already makes them atomic."""

    def __init__(self, storage: pybreaker.CircuitMemoryStorage) -> None:
        self._storage = storage
        self._trial_until = 0.0
        self._trial_token: str | None = None

    def claim_trial(self, token: str, lease_s: float) -> bool:
        now = time.monotonic()
        if self._trial_token is not None and now < self._trial_until:
            return False
        self._trial_token, self._trial_until = token, now + lease_s
        return True

    def release_trial(self, token: str) -> None:
        if self._trial_token == token:
            self._trial_token = None

    def trial_held(self) -> bool:
        return self._trial_token is not None and time.monotonic() < self._trial_until

    def compare_and_set(self, expected: str, new: str) -> bool:
        if self._storage.state != expected:
            return False
        self._storage.state = new
        return True


class _RedisCoordination:
    """Trial lease and compare-and-set shared by every process that uses the same Redis."""

    _RELEASE_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

    def __init__(self, client: redis.Redis, storage: _SharedRedisStorage) -> None:
        self._redis = client
        self._state_key = storage._namespace("state")
        self._trial_key = storage._namespace("trial")

    def claim_trial(self, token: str, lease_s: float) -> bool:
        try:
            return bool(self._redis.set(self._trial_key, token, nx=True, px=max(1, int(lease_s * 1000))))
        except RedisError:
            logger.warning("Circuit breaker store unreachable; no trial call granted.")
            return False

    def release_trial(self, token: str) -> None:
        try:
            self._redis.eval(self._RELEASE_IF_OURS, 1, self._trial_key, token)
        except RedisError:
            logger.warning("Circuit breaker store unreachable; the trial lease will expire by itself.")

    def trial_held(self) -> bool:
        try:
            return bool(self._redis.exists(self._trial_key))
        except RedisError:
            return True  # as claim_trial: no trial can be granted without the store

    def compare_and_set(self, expected: str, new: str) -> bool:
        def swap(pipe: redis.client.Pipeline) -> bool:
            current = pipe.get(self._state_key)
            if current is None or current.decode() != expected:
                return False
            pipe.multi()
            pipe.set(self._state_key, new)
            return True

        try:
            return bool(self._redis.transaction(swap, self._state_key, value_from_callable=True))
        except RedisError:
            logger.warning("Circuit breaker store unreachable; transition %s -> %s skipped.", expected, new)
            return False


class Permit:
    """Leave to send one HTTP request; record its outcome exactly once, outside any lock.

    ``answered()`` is for the moment a worker's 2xx headers arrive: a half-open trial
    closes the breaker then, instead of holding every other caller back for the whole
    length of a streamed execution. The final ``success()``/``failure()`` still counts
    like any other call (a stream that breaks afterwards is a failure).
    """

    def __init__(self, breaker: WorkerBreaker, *, trial: bool) -> None:
        self._breaker = breaker
        self.trial = trial
        self.token = uuid.uuid4().hex
        self._done = False

    def answered(self) -> None:
        if self.trial and not self._done:
            self._breaker._end_trial(self, ok=True)
            self.trial = False

    def success(self) -> None:
        self._finish(True)

    def failure(self) -> None:
        self._finish(False)

    def release(self) -> None:
        """No verdict (the caller aborted, or its own callback failed): the worker is not judged."""
        self._finish(None)

    def _finish(self, ok: bool | None) -> None:
        if self._done:
            return
        self._done = True
        self._breaker._record(self, ok)


class WorkerBreaker:
    """The breaker of one worker, shared by every thread of the process (and by processes via Redis)."""

    def __init__(
        self,
        config: BreakerConfig,
        *,
        storage: pybreaker.CircuitMemoryStorage | _SharedRedisStorage,
        coordination: _LocalCoordination | _RedisCoordination,
        listener: StateListener | None,
    ) -> None:
        self.name = config.name
        self._storage = storage
        self._coordination = coordination
        self._listener = listener
        self._shared = isinstance(coordination, _RedisCoordination)
        self._lock = threading.Lock()
        # No listeners are registered with pybreaker: it would also report transitions other
        # processes made (each process would then write the same audit record).
        self._cb = pybreaker.CircuitBreaker(state_storage=storage, name=config.name)
        self.configure(config)

    def configure(self, config: BreakerConfig) -> None:
        """Apply a fresh snapshot of the worker's settings (an admin may have changed them)."""
        self._cb.fail_max = config.breaker_fail_max
        self._cb.reset_timeout = config.breaker_reset_timeout_s
        self._trial_lease_s = config.connect_timeout_s + config.request_timeout_s + TRIAL_LEASE_MARGIN_S

    @property
    def state(self) -> str:
        return _OUR_NAMES.get(self._storage.state, CLOSED)

    @property
    def fail_counter(self) -> int:
        return self._storage.counter

    def is_open(self) -> bool:
        """Open and still inside the reset timeout: no call would be let through now."""
        return self._storage.state == pybreaker.STATE_OPEN and not self._reset_timeout_elapsed()

    def refuses_now(self) -> bool:
        """Whether :meth:`acquire` would refuse a call now: open within the reset timeout, or
        half-open with another caller's trial in flight. Routing asks this so it does not send
        work to a worker that would only be turned away."""
        state = self._storage.state
        if state == pybreaker.STATE_OPEN:
            return not self._reset_timeout_elapsed()
        if state == pybreaker.STATE_HALF_OPEN:
            return self._coordination.trial_held()
        return False

    def acquire(self) -> Permit | None:
        """A permit to call the worker, or None when the breaker refuses (open, or a trial is in flight)."""
        if self._storage.state == pybreaker.STATE_CLOSED:
            # The common case, without the lock: with Redis it is one read, and holding a
            # process-wide lock across it would queue every call to this worker behind it.
            return Permit(self, trial=False)
        changes: list[tuple[str, str]] = []
        with self._lock:
            state = self._storage.state
            if state == pybreaker.STATE_CLOSED:
                return Permit(self, trial=False)
            permit = Permit(self, trial=True)
            if state == pybreaker.STATE_OPEN:
                if not self._reset_timeout_elapsed():
                    return None
                if not self._coordination.claim_trial(permit.token, self._trial_lease_s):
                    return None
                if not self._transition(pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN, changes):
                    self._coordination.release_trial(permit.token)
                    return None
            elif not self._coordination.claim_trial(permit.token, self._trial_lease_s):
                return None  # half-open: someone else's trial is in flight
        self._notify(changes)
        return permit

    def _reset_timeout_elapsed(self) -> bool:
        opened_at = self._storage.opened_at
        return opened_at is None or datetime.now(UTC) >= opened_at + timedelta(seconds=self._cb.reset_timeout)

    def _end_trial(self, permit: Permit, *, ok: bool) -> None:
        changes: list[tuple[str, str]] = []
        with self._lock:
            self._transition(pybreaker.STATE_HALF_OPEN, pybreaker.STATE_CLOSED if ok else pybreaker.STATE_OPEN, changes)
            self._coordination.release_trial(permit.token)
        self._notify(changes)

    def _record(self, permit: Permit, ok: bool | None) -> None:
        if permit.trial:
            if ok is None:
                with self._lock:
                    self._coordination.release_trial(permit.token)  # state stays half-open: the next caller tries
            else:
                self._end_trial(permit, ok=ok)
            return
        if ok is None:
            return
        if ok:
            # A success ends any run of consecutive failures, whatever the state: open and
            # half-open do not use the counter, and closing resets it anyway. In Redis the
            # reset is one atomic write, made outside the lock for the same reason as above.
            if self._shared:
                self._storage.reset_counter()
            else:
                with self._lock:
                    self._storage.reset_counter()
            return
        changes: list[tuple[str, str]] = []
        with self._lock:
            self._storage.increment_counter()
            if self._storage.state == pybreaker.STATE_CLOSED and self._storage.counter >= self._cb.fail_max:
                self._transition(pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, changes)
        self._notify(changes)

    def _transition(self, old: str, new: str, changes: list[tuple[str, str]]) -> bool:
        """Move ``old`` -> ``new`` if nobody else moved first; pybreaker does the bookkeeping."""
        if not self._coordination.compare_and_set(old, new):
            return False
        if new == pybreaker.STATE_OPEN:
            self._cb.open()  # stamps opened_at, resets the trial's success counter
        elif new == pybreaker.STATE_HALF_OPEN:
            self._cb.half_open()
        else:
            self._cb.close()  # resets the consecutive-failure counter
        changes.append((_OUR_NAMES[old], _OUR_NAMES[new]))
        return True

    def _notify(self, changes: list[tuple[str, str]]) -> None:
        for old, new in changes:
            logger.info("Circuit breaker of worker %s: %s -> %s", self.name, old, new)
            if self._listener is None:
                continue
            try:
                self._listener(self.name, old, new)
            except Exception:
                # The breaker has already changed; a failing listener must not fail the call too.
                logger.exception("Circuit breaker listener failed for worker %s (%s -> %s)", self.name, old, new)


class _DefaultConfig:
    """Breaker settings for a worker asked about before any call configured it (the Worker model's defaults)."""

    breaker_fail_max = 5
    breaker_reset_timeout_s = 60
    request_timeout_s = 30.0
    connect_timeout_s = 5.0

    def __init__(self, name: str) -> None:
        self.name = name


class BreakerRegistry:
    """One :class:`WorkerBreaker` per worker name for this process; shared through Redis when ``redis_url`` is set.

    With Redis, keys live under ``agency:breaker:<worker name>:`` so every dispatcher
    and API process sees the same state, counter and trial lease.
    """

    def __init__(self, redis_url: str | None = None, listener: StateListener | None = None) -> None:
        self._listener = listener
        self._redis = (
            redis.Redis.from_url(
                redis_url, socket_timeout=REDIS_SOCKET_TIMEOUT_S, socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S
            )
            if redis_url
            else None
        )
        self._lock = threading.Lock()
        self._breakers: dict[str, WorkerBreaker] = {}

    def get(self, config: BreakerConfig) -> WorkerBreaker:
        """The breaker of ``config.name``, with ``config``'s current thresholds applied."""
        with self._lock:
            breaker = self._breakers.get(config.name)
            if breaker is None:
                breaker = self._breakers[config.name] = self._create(config)
                return breaker
        breaker.configure(config)
        return breaker

    def _create(self, config: BreakerConfig) -> WorkerBreaker:
        if self._redis is None:
            memory = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
            return WorkerBreaker(
                config, storage=memory, coordination=_LocalCoordination(memory), listener=self._listener
            )
        shared = _SharedRedisStorage(pybreaker.STATE_CLOSED, self._redis, namespace=f"{REDIS_NAMESPACE}:{config.name}")
        return WorkerBreaker(
            config, storage=shared, coordination=_RedisCoordination(self._redis, shared), listener=self._listener
        )

    def _known(self, name: str) -> WorkerBreaker:
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = self._breakers[name] = self._create(_DefaultConfig(name))
            return breaker

    def is_open(self, name: str) -> bool:
        """True while ``name``'s breaker is open and its reset timeout has not passed: route elsewhere."""
        return self._known(name).is_open()

    def refuses_now(self, name: str) -> bool:
        """True when a call to ``name`` would be refused now (see :meth:`WorkerBreaker.refuses_now`)."""
        return self._known(name).refuses_now()

    def state(self, name: str) -> str:
        """``closed``, ``open`` or ``half_open`` as stored (an open breaker past its timeout is still ``open``)."""
        return self._known(name).state
