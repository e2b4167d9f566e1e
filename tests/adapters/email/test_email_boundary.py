"""3.13's multipart boundary matcher on older Pythons (adapters.email.boundary): the parser
finds the same parts, preambles, epilogues and defects as with its own per-boundary regex."""

from __future__ import annotations

import re
import sys
from email import feedparser
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32, default

import pytest

from adapters.email import body as body_module  # installs the matcher, as the gateway runs
from adapters.email import boundary

BOUNDARIES = [
    "b",
    "",
    "frontera",
    "==============1234567890123456789==",
    "a.b+c*d?(e)[f]{g}^h$i|j",
    "back\\slash",
    "with space",
    "x" * 200,
    "ñandú",
    "'()+_,-./:=?",
]
TAILS = ["", "--", "  ", "\t", "--  ", "-- \t", "x", "--x", " x", "-", "---", "\r", "\r\n"]
ENDINGS = ["", "\n", "\r\n", "\r", "\n\n", "\r\n\r\n"]


def stdlib_pattern(separator: str) -> re.Pattern[str]:
    """The pattern Python 3.11 and 3.12 compile for a boundary (email/feedparser.py)."""
    return re.compile(
        "(?P<sep>" + re.escape(separator) + r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
    )


def answer(mo: re.Match[str] | None) -> tuple[bool, str | None, str | None]:
    return (False, None, None) if mo is None else (True, mo.group("end"), mo.group("linesep"))


@pytest.mark.parametrize("name", BOUNDARIES)
def test_the_matcher_answers_as_the_compiled_pattern(name: str) -> None:
    separator = "--" + name
    pattern = stdlib_pattern(separator)
    matcher = boundary._FeedparserRe().compile(pattern.pattern)
    assert isinstance(matcher, boundary.BoundaryMatcher) and matcher.separator == separator
    lines = [separator + tail + end for tail in TAILS for end in ENDINGS]
    lines += ["", "\n", "-" + separator, separator[:-1], "x" + separator, separator.upper()]
    for line in lines:
        assert answer(matcher.match(line)) == answer(pattern.match(line)), repr(line)


def test_other_patterns_compile_as_ever() -> None:
    proxy = boundary._FeedparserRe()
    for pattern in [r"\r\n|\r|\n", "(?P<sep>a)b", stdlib_pattern("--a").pattern + "x"]:
        assert proxy.compile(pattern) is re.compile(pattern)
    with pytest.raises(re.error):
        proxy.compile("(?P<sep>x")
    assert proxy.compile(stdlib_pattern("--a").pattern, re.I).flags & re.I
    assert proxy.escape("a.b") == re.escape("a.b") and proxy.NOFLAG == re.NOFLAG


def structure(msg: Message) -> list[tuple[object, ...]]:
    """What a reader of the parse sees: each part's type, payload, preamble, epilogue, defects."""
    return [
        (
            part.get_content_type(),
            None if part.is_multipart() else part.get_payload(),
            part.preamble,
            part.epilogue,
            [type(d).__name__ for d in part.defects],
        )
        for part in msg.walk()
    ]


def mail(name: str, newline: str = "\r\n", close: str = "--", preamble: str = "") -> bytes:
    inner = "alt" + name
    lines = [
        "From: ana@cliente.com",
        f'Content-Type: multipart/mixed; boundary="{name}"',
        "",
        preamble,
        f"--{name}",
        f'Content-Type: multipart/alternative; boundary="{inner}"',
        "",
        f"--{inner}",
        "Content-Type: text/plain",
        "",
        f"hola --{name}x no es frontera",
        f"--{inner} \t",
        "Content-Type: text/html",
        "",
        "<p>hola</p>",
        f"--{inner}--",
        f"--{name}",
        f"--{name}",
        "Content-Type: application/octet-stream",
        "",
        "AAAA",
        f"--{name}{close}",
        "epílogo",
    ]
    return newline.join(lines).encode()


@pytest.mark.parametrize("name", [b for b in BOUNDARIES if b and " " not in b])
@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
@pytest.mark.parametrize("close", ["--", "-- ", "", "--x"])
def test_messages_parse_to_the_same_parts(name: str, newline: str, close: str) -> None:
    raw = mail(name, newline, close, preamble="preámbulo")
    for policy in (compat32, default):
        ours = structure(BytesParser(policy=policy).parsebytes(raw))
        boundary.uninstall()
        try:
            theirs = structure(BytesParser(policy=policy).parsebytes(raw))
        finally:
            boundary.install()
        assert ours == theirs


def test_the_gateway_parses_with_the_matcher_before_3_13_and_leaves_3_13_alone() -> None:
    assert body_module.boundary is boundary
    if sys.version_info >= (3, 13):  # its parser has the matcher itself
        assert boundary.install() is False and feedparser.re is re
        assert hasattr(feedparser, "boundaryendRE")
    else:
        assert isinstance(feedparser.re, boundary._FeedparserRe)
        assert boundary.install() is True  # installing again changes nothing
        assert isinstance(feedparser.re, boundary._FeedparserRe)
