"""HTML mail bodies → readable text, and an allow-list sanitised copy for the agent UI.

Pure, one pass of the standard library's `HTMLParser`: script/style/head dropped, no images
kept (remote images are tracking beacons, checklist E17), only a small set of tags and the
`href` of http/https/mailto links survive; every text and attribute is re-escaped.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

DROP = frozenset({"script", "style", "head", "title", "template", "noscript", "svg", "math"})
VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "wbr", "area", "base", "col"})
BLOCK = frozenset(
    {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
     "table", "ul", "ol", "hr", "section", "article", "header", "footer"}
)  # fmt: skip
KEEP = frozenset(
    {"p", "div", "br", "span", "b", "i", "u", "em", "strong", "ul", "ol", "li", "blockquote",
     "pre", "code", "table", "thead", "tbody", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5",
     "h6", "hr", "a"}
)  # fmt: skip
SAFE_SCHEMES = ("http://", "https://", "mailto:")
MAX_DEPTH = 200


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.safe: list[str] = []
        self.dropping = 0
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROP:
            if tag not in VOID:
                self.dropping += 1
            return
        if self.dropping:
            return
        if tag in BLOCK:
            self.text.append("\n")
        if tag == "li":
            self.text.append("- ")
        if tag not in KEEP:
            return
        if tag == "a":
            href = (dict(attrs).get("href") or "").strip()
            if href.lower().startswith(SAFE_SCHEMES):
                self.safe.append(f'<a href="{html.escape(href)}"')
                self.safe.append(' rel="noopener noreferrer nofollow" target="_blank">')
            else:
                self.safe.append("<a>")
        else:
            self.safe.append(f"<{tag}>")
        if tag not in VOID and len(self.open) < MAX_DEPTH:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in DROP:
            self.dropping = max(0, self.dropping - 1)
            return
        if self.dropping:
            return
        if tag in BLOCK and tag != "li":
            self.text.append("\n")
        if tag in self.open:
            # Close everything opened inside it, so the output is always well nested.
            while self.open:
                inner = self.open.pop()
                self.safe.append(f"</{inner}>")
                if inner == tag:
                    break

    def handle_data(self, data: str) -> None:
        if self.dropping:
            return
        self.text.append(data)
        self.safe.append(html.escape(data))


_BLANKS = re.compile(r"\n\s*\n\s*\n+")


def html_to_text(source: str) -> tuple[str, str]:
    """(readable text, sanitised HTML) of an HTML document."""
    conv = _Converter()
    try:
        conv.feed(source)
        conv.close()
    except Exception:  # HTMLParser is lenient; anything else: keep what was read
        pass
    conv.safe.extend(f"</{tag}>" for tag in reversed(conv.open))
    lines = [" ".join(line.split()) for line in "".join(conv.text).splitlines()]
    text = _BLANKS.sub("\n\n", "\n".join(lines)).strip()
    return text, "".join(conv.safe).strip()
