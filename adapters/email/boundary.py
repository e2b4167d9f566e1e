"""Python 3.13's multipart boundary matcher for the email parser of Python 3.11 and 3.12.

Before 3.13, `email.feedparser` compiles a new regular expression for every multipart it
parses, from that multipart's boundary (CPython gh-106628): 86 µs a compile on this machine,
twice for the usual multipart/mixed message with a multipart/alternative inside, a quarter of
the whole body extraction of an 8 KB message. The same cost was in every parse of every
message with parts. Python 3.13 matches the boundary line with `str.startswith` and one
precompiled pattern for the rest of the line (gh-106629: `boundaryendRE`).

`install()` gives the older parser that same matcher: `email.feedparser` sees, in place of its
`re` module, one whose `compile` recognises the boundary pattern it builds and answers with a
`BoundaryMatcher`; every other call goes to `re` itself. The parser uses that pattern only
through `.match(line)`, reading the match's truth and its `end` and `linesep` groups, and those
are the same (tests/adapters/email/test_email_boundary.py compares both parsers). On 3.13 and
later `install()` leaves the parser alone.
"""

from __future__ import annotations

import re
import sys
from email import feedparser
from typing import Any

# The pattern 3.11 and 3.12 compile per boundary, around `re.escape('--' + boundary)`.
_HEAD = "(?P<sep>"
_TAIL = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
# The rest of a boundary line after the separator: 3.13's `boundaryendRE`.
_END = re.compile(r"(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$")
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


class BoundaryMatcher:
    """A multipart's boundary line: the separator, then optionally `--`, blanks, a newline."""

    __slots__ = ("separator",)

    def __init__(self, separator: str) -> None:
        self.separator = separator

    def match(self, line: str) -> re.Match[str] | None:
        """What `re.compile(pattern).match(line)` gives, for the groups the parser reads."""
        if not line.startswith(self.separator):
            return None
        return _END.match(line, len(self.separator))


def boundary_separator(pattern: str) -> str | None:
    """The separator (`--` + boundary) of a boundary pattern the old parser builds, or None
    for any other pattern."""
    if not (pattern.startswith(_HEAD) and pattern.endswith(_TAIL)):
        return None
    escaped = pattern[len(_HEAD) : -len(_TAIL)]
    separator = _ESCAPED.sub(r"\1", escaped)
    return separator if re.escape(separator) == escaped else None


class _FeedparserRe:
    """The `re` module as `email.feedparser` sees it once installed."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    def compile(self, pattern: Any, flags: int = 0) -> Any:
        if flags == 0 and isinstance(pattern, str):
            separator = boundary_separator(pattern)
            if separator is not None:
                return BoundaryMatcher(separator)
        return re.compile(pattern, flags)


def install() -> bool:
    """Give `email.feedparser` 3.13's boundary matcher; False where it has it already."""
    if sys.version_info >= (3, 13) or hasattr(feedparser, "boundaryendRE"):
        return False
    if not isinstance(feedparser.re, _FeedparserRe):
        feedparser.re = _FeedparserRe()  # type: ignore[assignment]
    return True


def uninstall() -> None:
    """The parser's own `re` again (tests compare both parsers)."""
    if isinstance(feedparser.re, _FeedparserRe):
        feedparser.re = re
