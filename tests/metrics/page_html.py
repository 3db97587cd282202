"""Reading rendered pages in tests: the text of elements picked by an attribute, without a DOM library."""

from __future__ import annotations

from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Collector(HTMLParser):
    def __init__(self, attr: str) -> None:
        super().__init__()
        self.attr = attr
        self.found: dict[str, str] = {}
        self.tags: list[str] = []
        self.depth = 0
        self.collecting: list[tuple[str, int]] = []  # (attribute value, depth) of the open picked elements

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in VOID:
            return
        self.depth += 1
        key = dict(attrs).get(self.attr)
        if key is not None:
            self.found.setdefault(key, "")
            self.collecting.append((key, self.depth))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if self.collecting and self.collecting[-1][1] == self.depth:
            self.collecting.pop()
        self.depth -= 1

    def handle_data(self, data: str) -> None:
        for key, _ in self.collecting:
            self.found[key] += data


def texts_by(html: str, attr: str) -> dict[str, str]:
    """``{value of attr: the element's text, whitespace collapsed}`` for every element carrying ``attr``."""
    parser = _Collector(attr)
    parser.feed(html)
    return {key: " ".join(text.split()) for key, text in parser.found.items()}


def tag_count(html: str, tag: str) -> int:
    parser = _Collector("")
    parser.feed(html)
    return parser.tags.count(tag)
