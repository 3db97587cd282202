"""A ``text/event-stream`` parser, as the WHATWG HTML standard's "interpreting an event stream".

Fed text incrementally (lines may be cut anywhere between network chunks, and end in
``\\n``, ``\\r\\n`` or ``\\r``), it yields one :class:`Event` per blank-line-terminated
block that carried data. Comment lines (``: keep-alive``) dispatch nothing; ``id`` persists
across events as the standard says (it is what a reconnect sends as ``Last-Event-ID``),
and an ``id`` holding NUL is ignored.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    id: str


class Parser:
    def __init__(self) -> None:
        self.last_event_id = ""
        self.retry_ms: int | None = None
        self.comments = 0
        self._pending = ""
        self._cr_pending = False
        self._data: list[str] = []
        self._event = ""
        self._started = False

    def feed(self, text: str) -> Iterator[Event]:
        """The events completed by ``text``."""
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")  # one byte order mark may open the stream
        if self._cr_pending and text.startswith("\n"):
            text = text[1:]  # the \n of a \r\n cut between two chunks
        self._cr_pending = False
        buffer = self._pending + text
        start = 0
        length = len(buffer)
        i = 0
        while i < length:
            char = buffer[i]
            if char in "\r\n":
                line = buffer[start:i]
                if char == "\r":
                    if i + 1 < length:
                        if buffer[i + 1] == "\n":
                            i += 1
                    else:
                        self._cr_pending = True
                start = i + 1
                event = self._line(line)
                if event is not None:
                    yield event
            i += 1
        self._pending = buffer[start:]

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return Event(event=event or "message", data="\n".join(data), id=self.last_event_id)


def events(chunks: Iterable[bytes], parser: Parser | None = None) -> Iterator[Event]:
    """The events of a byte stream (a streamed requests answer's ``iter_content``), UTF-8 decoded."""
    parser = parser or Parser()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield from parser.feed(text)
    tail = decoder.decode(b"", final=True)
    if tail:
        yield from parser.feed(tail)
    # An event not followed by its blank line when the stream ends is dropped (the standard's rule).
