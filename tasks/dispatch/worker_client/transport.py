"""HTTP plumbing of the worker client: per-thread sessions whose sockets an :class:`AbortHandle` can cut.

A thread blocked in ``recv()`` (waiting for response headers from a hung worker, or
for the next line of a long progress stream) does not notice a flag; it only returns
when its socket does. So every connection these sessions open registers its socket
with the calling thread's current abort handle, when it connects and again each time
it is used (a pooled keep-alive connection does not connect again), and
:meth:`AbortHandle.abort` shuts that socket down, which makes the blocked read return
at once.

Every new connection is also where the egress policy (:mod:`security.egress`) is enforced:
the connection resolves its host itself, checks every address of the answer, and connects
only to one of those checked addresses, so there is no gap between check and connect for a
changed DNS answer to slip through. For https the TLS handshake still names the host (SNI)
and the certificate is verified against the host name, not the address. A keep-alive
connection stays with the address it was checked at, and before it carries another request
the name is checked again, so a name that has come to resolve to a refused address is not
called at all from the next request on. A refusal raises
:class:`security.egress.EgressDenied` out of the request, untouched by urllib3 and requests
(it is no ``OSError``), so a caller can tell it from a network failure.

``requests.Session`` is not thread-safe, hence one session, and one connection pool,
per thread.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NameResolutionError, NewConnectionError
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from security import egress

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
            # A worker that answers "Connection: close" has its socket closed by http.client as
            # soon as the body is complete; the next read then ends the body without the socket.
            if self._sock is not None and self._sock.fileno() != -1:
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
    """Connections that register their sockets with the abort handle, and that the egress policy checks."""

    sock: socket.socket | None
    host: str
    port: int
    timeout: Any
    source_address: tuple[str, int] | None
    socket_options: Any
    # Connected by _new_conn for the request about to be sent, which need not check the name again.
    _fresh = False

    def _new_conn(self) -> socket.socket:
        """A TCP connection to an address the egress policy allows: resolved, checked, then connected to.

        urllib3's own ``_new_conn`` would resolve again inside ``create_connection``; this
        one connects to exactly the checked addresses, in the resolver's order, with the same
        error translation (so ``never_connected`` reads these failures as before).
        """
        try:
            targets = egress.connect_targets(self.host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        error: OSError | None = None
        for target in targets:
            sock = socket.socket(target.family, socket.SOCK_STREAM)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                if self.timeout is not _DEFAULT_TIMEOUT:
                    sock.settimeout(self.timeout)
                if self.source_address:
                    sock.bind(self.source_address)
                sock.connect(target.sockaddr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            self._fresh = True
            return sock
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from error
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error  # type: ignore[arg-type]

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _register(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None and not self._fresh:
            self._check_again()
        _register(self.sock)  # a reused keep-alive connection: connect() is not called again
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._fresh = False

    def _check_again(self) -> None:
        """Before a reused keep-alive connection carries another request: the name, checked again.

        The connection itself goes to the address checked when it was opened; but a name that
        now resolves to a refused address (rebinding) is not called at all, not even on that
        old connection, so a refusal takes effect at the next call, pooled connection or not.
        A name that does not resolve for now leaves the connection with its checked address.
        """
        with contextlib.suppress(socket.gaierror):
            egress.connect_targets(self.host, self.port)

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
    """requests adapter whose pools open checked, abortable connections; no urllib3 retries (tenacity retries)."""

    def __init__(self) -> None:
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _AbortableHTTPPool, "https": _AbortableHTTPSPool}


class _NoRedirectSession(requests.Session):
    """A session that never follows a redirect, whatever a caller passes as ``allow_redirects``.

    requests follows redirects by default (for GET); the callers pass ``allow_redirects=False``,
    and this makes a forgotten one harmless: with no redirect target there is no second hop,
    and the 3xx comes back to the caller as it is (``response.is_redirect``), to be refused.
    """

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


def new_session() -> requests.Session:
    """A session whose every connection is checked by the egress policy and can be aborted.

    ``trust_env`` is off: a worker is reached at exactly its registered URL, not through
    a proxy from the environment (which would route around the connect-time check, and
    whose connections could not be aborted) and never with credentials picked up from
    ``~/.netrc``. Redirects are never followed (:class:`_NoRedirectSession`).
    """
    session = _NoRedirectSession()
    session.trust_env = False
    adapter = AbortableAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def thread_session() -> requests.Session:
    """This thread's session (:func:`new_session`), created on first use."""
    session: requests.Session | None = getattr(_thread, "session", None)
    if session is None:
        session = _thread.session = new_session()
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
