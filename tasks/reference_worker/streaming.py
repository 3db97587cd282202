"""NDJSON responses with chunked transfer encoding, one event per line, as the work happens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tasks.reference_worker.protocol import NDJSON_TYPE, PROTOCOL_HEADER, PROTOCOL_VERSION, ndjson_line

if TYPE_CHECKING:
    from tasks.reference_worker.server import WorkerHandler


class NdjsonStream:
    """One NDJSON response, chunk by chunk; remembers whether the client is still there."""

    def __init__(self, handler: WorkerHandler, drop_after: int | None) -> None:
        self.handler = handler
        self.drop_after = drop_after
        self.progress_sent = 0
        self.open = False

    def start(self) -> None:
        h = self.handler
        try:
            h.send_response(200)
            h.send_header("Content-Type", NDJSON_TYPE)
            h.send_header("Transfer-Encoding", "chunked")
            h.send_header(PROTOCOL_HEADER, PROTOCOL_VERSION)
            h.send_header("Cache-Control", "no-store")
            h.end_headers()
            self.open = True
        except OSError:
            h.close_connection = True
        if self.drop_after == 0:
            self._drop()

    def emit(self, event: dict[str, Any]) -> None:
        self._write(ndjson_line(event))
        if event.get("type") == "progress" and self.open:
            self.progress_sent += 1
            if self.drop_after is not None and self.progress_sent >= self.drop_after:
                self._drop()

    def cut_if_due(self) -> None:
        """A drop fault with fewer progress lines than asked for still drops, before the result line."""
        if self.drop_after is not None:
            self._drop()

    def finish(self, result: dict[str, Any]) -> bool:
        """Send the result line and the last chunk; True when they were written."""
        self._write(ndjson_line(result), last=True)
        return self.open

    def _write(self, line: bytes, *, last: bool = False) -> None:
        if not self.open:
            return
        chunk = b"%x\r\n%s\r\n" % (len(line), line)
        try:
            # The result line and the terminating zero-length chunk go out in one write.
            self.handler.wfile.write(chunk + b"0\r\n\r\n" if last else chunk)
        except OSError:
            self.open = False
            self.handler.close_connection = True

    def _drop(self) -> None:
        if self.open:
            self.open = False
            self.handler.drop_connection()
