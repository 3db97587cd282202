"""HTTP plumbing of the worker client: per-thread sessions whose sockets an :class:`AbortHandle` can cut.

A thread blocked in ``recv()`` (waiting for response headers from a hung worker, or
for the next line of a long progress stream) does not notice a flag; it only returns
when its socket does. So every connection these sessions open registers its socket
with the calling thread's current abort handle, when it connects and again each time
it is used (a pooled keep-alive connection does not connect again), and
:meth:`AbortHandle.abort` shuts that socket down, which makes the blocked read return
at once.

``requests.Session`` is not thread-safe, hence one session, and one connection pool,
per thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

_thread = threading.local()


class AbortHandle:
    """Stops one attempt from any thread: sets a flag and shuts down the socket the attempt is using.

    Thread-safe. An abort that comes before the attempt opens its connection still
    works: the flag is checked before each try, and a socket registered after the
    abort is shut down on registration. The one blind spot is the TCP connect itself
    (the socket object does not exist until it succeeds); the connect timeout bounds it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._sock: socket.socket | None = None
        self._owned = False

    def abort(self) -> None:
        with self._lock:
            self._event.set()
            # Under the lock: once detach() has returned, this handle can no longer touch a
            # socket that went back to the pool and serves another attempt.
            if self._sock is not None:
                _shutdown(self._sock)

    @property
    def aborted(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (a retry backoff); returns early, True, when aborted."""
        return self._event.wait(max(0.0, seconds))

    def set_read_timeout(self, seconds: float) -> None:
        """Bound the next socket read (the deadline shrinks while a stream runs)."""
        with self._lock:
            if self._sock is not None:
                self._sock.settimeout(max(0.001, seconds))

    def _attach(self, sock: socket.socket, *, owned: bool = False) -> None:
        """Watch ``sock``; an ``owned`` one (a duplicate descriptor) is closed when replaced or detached."""
        with self._lock:
            self._close_owned()
            self._sock = sock
            self._owned = owned
            if self._event.is_set():
                _shutdown(sock)

    def _detach(self) -> None:
        with self._lock:
            self._close_owned()
            self._sock = None

    def _close_owned(self) -> None:
        if self._owned and self._sock is not None:
            self._sock.close()
        self._owned = False


def _shutdown(sock: socket.socket) -> None:
    # The plain socket method, also for a TLS socket: ssl.SSLSocket.shutdown() would first
    # drop the SSL object that the blocked thread is still reading through.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _register(sock: socket.socket | None, *, duplicate: bool = False) -> None:
    handle: AbortHandle | None = getattr(_thread, "abort", None)
    if handle is not None and sock is not None:
        handle._attach(sock.dup() if duplicate else sock, owned=duplicate)


@contextlib.contextmanager
def abortable(handle: AbortHandle) -> Iterator[None]:
    """Make ``handle`` the one this thread's connections register with, for the duration of one try."""
    _thread.abort = handle
    try:
        yield
    finally:
        _thread.abort = None
        handle._detach()


class _AbortableMixin:
    sock: socket.socket | None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _register(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self.sock)  # a reused keep-alive connection: connect() is not called again
        super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self) -> Any:
        _register(self.sock)
        return super().getresponse()  # type: ignore[misc]


class AbortableHTTPConnection(_AbortableMixin, HTTPConnection):
    pass


class AbortableHTTPSConnection(_AbortableMixin, HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        # A stuck server can hold up the TLS handshake too. Wrapping detaches the descriptor
        # from this socket object, so a duplicate is watched until connect() registers the
        # TLS socket (shutdown acts on the connection, whichever descriptor names it).
        _register(sock, duplicate=True)
        return sock


class _AbortableHTTPPool(HTTPConnectionPool):
    ConnectionCls = AbortableHTTPConnection


class _AbortableHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = AbortableHTTPSConnection


class AbortableAdapter(HTTPAdapter):
    """requests adapter whose pools open abortable connections; no urllib3 retries (tenacity retries)."""

    def __init__(self) -> None:
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _AbortableHTTPPool, "https": _AbortableHTTPSPool}


def thread_session() -> requests.Session:
    """This thread's session, created on first use.

    ``trust_env`` is off: a worker is reached at exactly its registered URL, not through
    a proxy from the environment (whose connections could not be aborted) and never with
    credentials picked up from ``~/.netrc``.
    """
    session: requests.Session | None = getattr(_thread, "session", None)
    if session is None:
        session = requests.Session()
        session.trust_env = False
        adapter = AbortableAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _thread.session = session
    return session


def never_connected(exc: requests.RequestException) -> bool:
    """Whether ``exc`` was raised before any connection to the server existed: the request provably never left.

    urllib3 raises ``ConnectTimeoutError`` and its subclasses ``NewConnectionError``
    (refused, no route) and ``NameResolutionError`` (DNS) only from opening the socket, and
    with no retries of its own it wraps them in a ``MaxRetryError`` that requests passes
    on as the first argument of its exception. Everything else may have reached the
    server: a connection reset or closed after the request was written, a read timeout,
    and TLS errors, which urllib3 raises alike from the handshake and from a connection
    the request already went through (a handshake timeout even surfaces as a read timeout).
    """
    cause = exc.args[0] if exc.args else None
    return isinstance(cause, MaxRetryError) and isinstance(cause.reason, ConnectTimeoutError)
