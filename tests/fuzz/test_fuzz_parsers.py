"""Fuzzing the pure parsers (issue #16 item 6): MIME (headers and bodies), chat frames,
Telegram updates and configuration loading never raise anything but their documented error,
whatever the input (hypothesis; profiles in tests/fuzz/conftest.py)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.email.body import extract_body
from adapters.email.parse import read_headers
from adapters.telegram.update import NotAnUpdate, parse_update
from adapters.webchat.frames import FrameError, parse_frame
from config.loader import ConfigError, load_settings

COUNTRIES = ("CR", "MX", "US")
HEADER_NAMES = st.sampled_from(
    [
        "From",
        "To",
        "Subject",
        "Message-ID",
        "In-Reply-To",
        "References",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Auto-Submitted",
        "Precedence",
        "List-Id",
        "Received",
        "X-Loop",
        "Return-Path",
        "Content-Disposition",
        "MIME-Version",
        "X-Weird",
    ]
)
HEADER_VALUES = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        [
            'multipart/mixed; boundary="b"',
            "multipart/report; report-type=delivery-status",
            'text/plain; charset="x-unknown"',
            "=?utf-8?B?w6k=?=",
            "=?bad?Q?=ZZ?=",
            "<a@b>",
            "(((((((((((nested)))))))))))<x@y>",
            "base64",
            "quoted-printable",
            "auto-replied",
        ]
    ),
)


@st.composite
def mime_messages(draw: Any, depth: int = 0) -> bytes:
    """Mail built from header and MIME pieces (nesting, bad encodings), or raw bytes."""
    headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8))
    head = b"".join(
        f"{k}: {v}".encode("utf-8", "surrogateescape").replace(b"\n", b" ") + b"\r\n"
        for k, v in headers
    )
    if depth < 3 and draw(st.booleans()):
        parts = draw(st.lists(mime_messages(depth + 1), min_size=1, max_size=3))
        boundary = draw(st.sampled_from(["b", "", "b\r\n", "x" * 80]))
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + p for p in parts)
        body += draw(st.sampled_from([b"--" + boundary.encode() + b"--\r\n", b""]))
        ctype = f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'.encode()
        return head + ctype + b"\r\n" + body
    return head + b"\r\n" + draw(st.binary(max_size=400)) + b"\r\n"


@given(st.one_of(mime_messages(), st.binary(max_size=2000)))
def test_mime_parsing_never_raises(raw: bytes) -> None:
    facts = read_headers(
        raw, mail_from="x@y.test", own_addresses={"soporte@callmyway.com"}, loop_id="soporte"
    )
    assert facts.provider_id
    body = extract_body(raw, 10_000)
    assert isinstance(body.text, str)


def deep_mime(levels: int) -> bytes:
    head = b"From: a@b.test\r\nSubject: deep\r\n"
    parts = b"hola\r\n"
    for i in range(levels):
        b = f"b{i}".encode()
        parts = (
            b'Content-Type: multipart/mixed; boundary="'
            + b
            + b'"\r\n\r\n--'
            + b
            + b"\r\n"
            + parts
            + b"--"
            + b
            + b"--\r\n"
        )
    return head + parts


def test_mime_nested_1000_deep_is_degraded_not_a_crash() -> None:
    """Checklist E14: a nesting bomb is refused by the parse budget, its text kept."""
    body = extract_body(deep_mime(1000), 10_000)
    assert body.degraded and "MIME" in body.text  # the raw text kept, with the note


JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=50)
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
FRAME_KEYS = st.sampled_from(
    [
        "type",
        "token",
        "text",
        "name",
        "email",
        "phone",
        "country",
        "lang",
        "client_id",
        "severity",
        "impact",
    ]
)
FRAME_TYPES = st.sampled_from(["hello", "start", "begin", "details", "message", "x", None, 1])


@st.composite
def chat_frames(draw: Any) -> str:
    data = draw(st.dictionaries(FRAME_KEYS, JSON, max_size=6))
    data["type"] = draw(FRAME_TYPES)
    return json.dumps(data)


@given(st.one_of(chat_frames(), st.text(max_size=300)))
def test_chat_frames_parse_or_frame_error(raw: str) -> None:
    with contextlib.suppress(FrameError):
        parse_frame(raw, COUNTRIES)


UPDATE_KEYS = st.sampled_from(
    ["message", "edited_message", "callback_query", "channel_post", "my_chat_member", "poll"]
)


@st.composite
def telegram_updates(draw: Any) -> dict[str, Any]:
    message = {
        "message_id": draw(st.one_of(st.integers(), JSON)),
        "date": draw(st.one_of(st.integers(min_value=0, max_value=2**33), JSON)),
        "chat": draw(
            st.one_of(
                st.fixed_dictionaries({"id": st.integers(), "type": st.just("private")}), JSON
            )
        ),
        "text": draw(st.one_of(st.text(max_size=100), JSON)),
    }
    extra = draw(
        st.dictionaries(
            st.sampled_from(["from", "photo", "voice", "document", "caption", "entities"]),
            JSON,
            max_size=3,
        )
    )
    return {
        "update_id": draw(st.one_of(st.integers(min_value=-5, max_value=2**40), JSON)),
        draw(UPDATE_KEYS): {**message, **extra},
    }


@given(st.one_of(telegram_updates(), st.dictionaries(st.text(max_size=10), JSON, max_size=4)))
def test_telegram_updates_parse_or_not_an_update(data: dict[str, Any]) -> None:
    with contextlib.suppress(NotAnUpdate):
        parse_update(data)


def test_regression_telegram_message_text_of_the_wrong_type_is_not_an_update() -> None:
    """Found by the fuzzer: {"text": true} made parse_update raise AttributeError (a 500)."""
    update = {
        "update_id": 0,
        "message": {"message_id": 0, "date": 0, "text": True, "chat": {"id": 0, "type": "private"}},
    }
    with pytest.raises(NotAnUpdate):
        parse_update(update)


@pytest.mark.parametrize("chat", [None, {"type": "private"}])
def test_regression_telegram_edited_message_without_a_chat_is_not_an_update(chat: Any) -> None:
    """Found by the fuzzer (issue 19's last suite run): an `edited_message` whose `chat` is null
    made parse_update raise AttributeError (a 500) instead of refusing it."""
    update = {
        "update_id": 0,
        "edited_message": {"message_id": 0, "date": 0, "chat": chat, "text": ""},
    }
    with pytest.raises(NotAnUpdate):
        parse_update(update)


@pytest.mark.parametrize("date", [9.223372036854776e18, 2**62, -(2**62), 1e300])
def test_regression_telegram_date_out_of_any_clock_is_not_an_update(date: float) -> None:
    """Found by the long fuzz run: a huge `date` made PTB raise OverflowError/OSError."""
    update = {
        "update_id": 0,
        "message": {
            "message_id": 0,
            "date": date,
            "text": "hola",
            "chat": {"id": 0, "type": "private"},
        },
    }
    with pytest.raises(NotAnUpdate):
        parse_update(update)


CONFIG_SECTIONS = st.sampled_from(
    [
        "gateway",
        "email",
        "webchat",
        "click2call",
        "limits",
        "retention",
        "hours",
        "lines",
        "sla",
        "outbox",
        "incidents",
        "nope",
    ]
)
CONFIG_KEYS = st.sampled_from(
    [
        "default_country",
        "addresses",
        "max_message_bytes",
        "idle_timeout",
        "mon",
        "allowed_origins",
        "http_connections_per_ip",
        "receipts",
        "outbox",
        "S1",
        "MX",
        "timezone",
        "number",
        "hours",
        "attention",
        "clock",
        "categories",
        "max_attempts",
        "smtp_data_memory_bytes",
        "x",
    ]
)


@given(st.dictionaries(CONFIG_SECTIONS, st.dictionaries(CONFIG_KEYS, JSON, max_size=3), max_size=3))
def test_configuration_loads_or_names_the_problem(tree: dict[str, Any]) -> None:
    try:
        load_settings({"GATEWAY_DB": "sqlite:///var/fuzz.db"}, tree)
    except ConfigError as exc:
        assert str(exc)  # one line naming the setting


# MIME headers as mail clients write them, and their usual slips: the extraction parses the plain
# ones with compat32 and the rest with policy.default; both must read what policy.default reads.
MIME_TYPES = st.sampled_from(
    ["text/plain", "TEXT/HTML", "text/html", "application/pdf", "image/png", "text/calendar",
     "multipart/alternative", "message/rfc822", "text", "text/plain (x)", " text/plain "]
)  # fmt: skip
PARAM_NAMES = st.sampled_from(
    ["charset", "name", "filename", "boundary", "format", "filename*", "name*0*", "name*1*"]
)
PARAM_VALUES = st.one_of(
    st.sampled_from(
        [
            "utf-8",
            '"utf-8"',
            "iso-8859-1",
            "x-unknown",
            '"informe (final); v2.pdf"',
            "a(b)c",
            '"=?utf-8?B?w6k=?="',
            "utf-8''%C3%A9",
            '"a\\"b"',
            '""',
            "ñ",
            '"x/y.pdf"',
            "a.b",
        ]
    ),
    st.from_regex(r"\A[A-Za-z0-9.+_-]{1,10}\Z"),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12).map(
        lambda t: f'"{t}"'
    ),
    st.text(max_size=8),
)
SEPARATORS = st.sampled_from(["; ", ";", " ; ", ";\r\n ", ";\r\n\t", "; ;"])
PART_BODIES = st.one_of(
    st.sampled_from([b"Hola", b"SG9sYQ==", b"caf=C3=A9 =\r\nfin", b"<p>hola</p>", b"\xe9t\xe9"]),
    st.binary(max_size=40),
)


@st.composite
def mime_part(draw: Any) -> bytes:
    def header(name: str, value: str) -> str:
        params = draw(st.lists(st.tuples(PARAM_NAMES, PARAM_VALUES), max_size=3))
        sep = draw(SEPARATORS)
        return f"{name}: {value}" + "".join(f"{sep}{k}={v}" for k, v in params)

    lines = [header("Content-Type", draw(MIME_TYPES))]
    if draw(st.booleans()):
        disposition = st.sampled_from(["attachment", "inline", "ATTACHMENT", "attachment (x)", ""])
        lines.append(header("Content-Disposition", draw(disposition)))
    if draw(st.booleans()):
        cte = st.sampled_from(["base64", "quoted-printable", "7bit", "BASE64", " base64 ", "x"])
        lines.append(f"Content-Transfer-Encoding: {draw(cte)}")
    head = "\r\n".join(lines).encode("utf-8", "surrogateescape")
    return head + b"\r\n\r\n" + draw(PART_BODIES) + b"\r\n"


@st.composite
def mime_structures(draw: Any, depth: int = 0) -> bytes:
    inner = mime_part() if depth else st.one_of(mime_part(), mime_structures(depth + 1))
    parts = draw(st.lists(inner, min_size=1, max_size=3))
    boundary = b"frontera%d" % depth
    body = b"".join(b"--" + boundary + b"\r\n" + p for p in parts) + b"--" + boundary + b"--\r\n"
    ctype = b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
    return ctype + body


@given(st.one_of(mime_messages(), mime_structures()))
def test_mime_parsing_reads_what_the_default_policy_reads(raw: bytes) -> None:
    """The extraction's cheap parsing (compat32 for plain mail, memoised headers otherwise)
    changes nothing it reads."""
    from email import policy
    from email.parser import BytesParser

    from adapters.email import body as body_module

    fast = extract_body(raw, 10_000)
    real = body_module.parse_message
    body_module.parse_message = lambda r, _=None: BytesParser(policy=policy.default).parsebytes(r)
    try:
        assert fast == extract_body(raw, 10_000)
    finally:
        body_module.parse_message = real


@given(st.one_of(mime_messages(), mime_structures(), st.binary(max_size=2000)))
def test_mime_parts_are_found_as_the_standard_parser_finds_them(raw: bytes) -> None:
    """3.13's boundary matcher (adapters.email.boundary, installed on older Pythons) changes no
    part, preamble, epilogue or defect the parser finds."""
    from email import policy
    from email.parser import BytesParser

    from adapters.email import boundary

    def parts(r: bytes) -> list[tuple[Any, ...]]:
        msg = BytesParser(policy=policy.compat32).parsebytes(r)
        return [
            (p.get_content_type(), p.get_payload() if not p.is_multipart() else None,
             p.preamble, p.epilogue, [type(d).__name__ for d in p.defects])
            for p in msg.walk()
        ]  # fmt: skip

    ours = parts(raw)
    boundary.uninstall()
    try:
        assert ours == parts(raw)
    finally:
        boundary.install()
