"""The SSE parser, against the event-stream rules of the WHATWG HTML standard."""

from __future__ import annotations

import pytest

from agency import sse

STREAM = (
    ":" + " " * 64 + "\n\n"
    "event: stream-open\nid: task-1:3\ndata: \n\n"
    'event: event\nid: task-1:4\ndata: {"seq":4}\n\n'
    ": keep-alive\n\n"
    'event: event\nid: task-1:5\ndata: {"seq":5,\ndata: "more":true}\n\n'
)
EXPECTED = [
    sse.Event("stream-open", "", "task-1:3"),
    sse.Event("event", '{"seq":4}', "task-1:4"),
    sse.Event("event", '{"seq":5,\n"more":true}', "task-1:5"),
]


def parse(*chunks: str) -> tuple[list[sse.Event], sse.Parser]:
    parser = sse.Parser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events, parser


def test_it_parses_events_comments_and_multi_line_data():
    events, parser = parse(STREAM)

    assert events == EXPECTED
    assert parser.comments == 2
    assert parser.last_event_id == "task-1:5"


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_every_line_ending_reads_alike_cut_anywhere(newline):
    text = STREAM.replace("\n", newline)
    for cut in range(len(text) + 1):
        events, _ = parse(text[:cut], text[cut:])
        assert events == EXPECTED, f"cut at {cut}"


def test_it_reads_a_stream_fed_one_character_at_a_time():
    events, _ = parse(*STREAM)
    assert events == EXPECTED


def test_the_id_persists_to_later_events_without_one():
    events, _ = parse("id: a:1\ndata: x\n\ndata: y\n\n")
    assert [e.id for e in events] == ["a:1", "a:1"]


def test_an_id_with_nul_is_ignored_and_a_blank_id_resets_it():
    events, _ = parse("id: a:1\ndata: x\n\nid: bad\0id\ndata: y\n\nid\ndata: z\n\n")
    assert [e.id for e in events] == ["a:1", "a:1", ""]


def test_a_block_without_data_dispatches_nothing_but_sets_the_id():
    events, parser = parse("id: a:7\nevent: ping\n\n")
    assert events == []
    assert parser.last_event_id == "a:7"


def test_only_one_space_after_the_colon_is_dropped_and_unknown_fields_are_ignored():
    events, _ = parse("data:no space\nfoo: bar\ndata:  two spaces\n\n")
    assert events == [sse.Event("message", "no space\n two spaces", "")]


def test_retry_is_kept_when_it_is_a_number():
    _, parser = parse("retry: 2500\n\nretry: soon\n\n")
    assert parser.retry_ms == 2500


def test_an_event_cut_off_by_the_end_of_the_stream_is_dropped():
    events = list(sse.events([b"data: complete\n\n", b"data: cut off"]))
    assert events == [sse.Event("message", "complete", "")]


def test_utf8_split_between_chunks_and_a_leading_bom_are_decoded():
    raw = "\ufeffdata: café ✓\n\n".encode()
    chunks = [raw[i : i + 1] for i in range(len(raw))]
    assert list(sse.events(chunks)) == [sse.Event("message", "café ✓", "")]
