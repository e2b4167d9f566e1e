"""The pure halves of email intake: headers-only decisions, body extraction, HTML to text."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.email.body import extract_body
from adapters.email.html import html_to_text
from adapters.email.parse import clean_line, degraded_facts, read_headers
from tests.adapters.email.conftest import FIXTURES, fixture, mail

OWN = {"soporte@callmyway.com"}


def facts(raw: bytes, mail_from: str = "ana@cliente.com"):
    return read_headers(
        raw, mail_from=mail_from, own_addresses=OWN, loop_id="soporte@callmyway.com"
    )


@pytest.mark.parametrize(
    ("headers", "mail_from", "sender", "flag"),
    [
        ({"Auto-Submitted": "auto-replied"}, "ana@cliente.com", None, "auto_submitted"),
        ({"Auto-Submitted": "auto-generated; owner-email=x@y"}, "a@b.c", None, "auto_submitted"),
        ({"Precedence": "bulk"}, "a@b.c", None, "bulk"),
        ({"Precedence": "junk"}, "a@b.c", None, "bulk"),
        ({"Precedence": "list"}, "a@b.c", None, "bulk"),
        ({"List-Id": "<x.lists.example>"}, "a@b.c", None, "mailing_list"),
        ({"X-Auto-Response-Suppress": "OOF"}, "a@b.c", None, "auto_response_suppressed"),
        ({}, "", None, "null_sender"),
        ({}, "a@b.c", "MAILER-DAEMON@mx.example.org", "bounce"),
        ({}, "a@b.c", "postmaster@mx.example.org", "bounce"),
        ({}, "a@b.c", "Soporte <SOPORTE@callmyway.com>", "own_address"),
    ],
)
def test_messages_that_must_not_be_answered(headers, mail_from, sender, flag) -> None:
    raw = mail(headers=headers, sender=sender or "Ana <ana@cliente.com>")
    got = facts(raw, mail_from)
    assert flag in got.flags
    assert got.acknowledge is False


def test_an_ordinary_message_is_answered_and_auto_submitted_no_is_ordinary() -> None:
    got = facts(mail(headers={"Auto-Submitted": "no", "Precedence": "normal"}))
    assert got.acknowledge and got.flags == ()


def test_dedupe_key_is_message_id_plus_sender_or_a_hash_without_message_id() -> None:
    one = facts(mail(msgid="<same@x>", sender="ana@cliente.com"))
    other = facts(mail(msgid="<same@x>", sender="eva@cliente.com"))
    assert one.provider_id == "<same@x> ana@cliente.com" != other.provider_id
    raw = mail().replace(b"Message-ID:", b"X-Old-Message-ID:")
    assert facts(raw).provider_id.startswith("sha256:")
    assert facts(raw).provider_id == facts(raw).provider_id


def test_threading_ids_and_only_valid_tracking_numbers() -> None:
    got = facts(
        mail(
            subject="Re: [CMW-0000042-7] y CMW-0000042-8",
            headers={"In-Reply-To": "<a@x>", "References": "<r1@x> <r2@x> <a@x>"},
        )
    )
    assert got.references == ("<a@x>", "<r1@x>", "<r2@x>")
    assert got.tracking_hints == ("CMW-0000042-7",)  # the wrong check digit is not a hint


def test_loops_are_detected_from_received_count_and_our_x_loop() -> None:
    hops = b"".join(
        b"Received: from h%d by h%d; Mon, 30 Nov 2026 10:00:00 +0000\r\n" % (i, i)
        for i in range(31)
    )
    assert facts(hops + mail()).loop == "31 Received headers"
    assert facts(mail(headers={"X-Loop": "SOPORTE@callmyway.com"})).loop is not None
    assert facts(mail(headers={"X-Loop": "other@list.example"})).loop is None


def test_hostile_headers_never_raise() -> None:
    nested = "(" * 10_000 + ")" * 10_000
    raw = (
        f"From: {nested} <a@b.c>\r\nSubject: {'x' * 200_000}\r\nMessage-ID: <m@x>\r\n\r\nhola\r\n"
    ).encode()
    got = facts(raw)
    assert len(got.subject) <= 500
    assert got.provider_id.startswith("<m@x>")


def test_header_values_become_one_clean_line() -> None:
    assert clean_line("Hola\r\nBcc: victim@x\x00") == "Hola Bcc: victim@x"
    got = facts(mail(subject="=?utf-8?q?Hola=0D=0ABcc=3A_victim=40x?="))
    assert "\n" not in got.subject and "\r" not in got.subject


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("latin1_qp.eml", "¿Pueden revisar la línea?"),
        ("windows1252.eml", "It’s costing us €100 a day"),
        ("unknown_charset.eml", "se\ufffdal"),
        ("html_only.eml", "Desde ayer las llamadas se caen a los 30 segundos."),
        ("forwarded.eml", "Desde el viernes las llamadas entrantes dan ocupado."),
        ("broken_boundary.eml", "Necesito ayuda para configurar mi extension 204"),
    ],
)
def test_body_text_of_the_corpus(name: str, expected: str) -> None:
    body = extract_body(fixture(name), 10_000_000)
    assert expected in body.text
    assert "\r" not in body.text


def test_html_is_converted_and_sanitised() -> None:
    text, safe = html_to_text(
        '<style>p{}</style><script>alert(1)</script><p onclick="x()">Hola <b>mundo</b></p>'
        '<a href="javascript:alert(1)">a</a><a href="https://ok.example/x">b</a>'
        '<img src="http://tracker/x.gif"><svg><script>1</script></svg>'
    )
    assert text.split() == ["Hola", "mundo", "ab"]  # inline links run together, as rendered
    assert "script" not in safe and "onclick" not in safe and "javascript" not in safe
    assert "<img" not in safe and "tracker" not in safe and "svg" not in safe
    assert '<a href="https://ok.example/x" rel="noopener noreferrer nofollow"' in safe


def test_attachments_and_limits() -> None:
    body = extract_body(fixture("base64_attachments.eml"), 10_000_000)
    assert [(a.filename, a.content_type, a.inline) for a in body.attachments] == [
        ("factura-noviembre.pdf", "application/pdf", False),
        ("captura.png", "image/png", True),
    ]
    assert body.attachments[0].data.startswith(b"%PDF")
    small = extract_body(fixture("base64_attachments.eml"), 80)
    assert [a.filename for a in small.attachments] == ["captura.png"]
    assert "Adjunto omitido: factura-noviembre.pdf" in small.text


def test_dsn_facts() -> None:
    raw = fixture("dsn.eml").replace(b"{{ORIGINAL_ID}}", b"<ack-1@callmyway.com>")
    body = extract_body(raw, 10_000_000)
    assert body.original_ids == ["<ack-1@callmyway.com>"]
    assert body.failed_recipients == ["ana@cliente.com"]
    assert body.diagnostic.startswith("5.1.1")


def test_pathological_structures_degrade_instead_of_raising() -> None:
    deep = b"From: a@b.c\r\nMessage-ID: <d@x>\r\n"
    for i in range(1000):
        deep += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
    deep += b"Content-Type: text/plain\r\n\r\nfondo\r\n"
    body = extract_body(deep, 1000)
    assert body.degraded and "no se interpretó" in body.text
    bad64 = mail().replace(b"Content-Transfer-Encoding: 7bit", b"Content-Transfer-Encoding: base64")
    assert isinstance(extract_body(bad64, 1000).text, str)


def test_unreadable_headers_still_give_a_stored_unanswered_message() -> None:
    got = degraded_facts(b"\xff\xfe garbage", "ana@cliente.com")
    assert got.provider_id.startswith("sha256:") and got.from_address == "ana@cliente.com"
    assert "parse_degraded" in got.flags and got.acknowledge is False


def _with_default_policy(raw: bytes, lowered: bytes | None = None) -> Any:
    from email import policy
    from email.parser import BytesParser

    return BytesParser(policy=policy.default).parsebytes(raw)


ODD_FILENAMES = [
    # RFC 2231 continuation with a charset, an RFC 2047 word in a quoted name, no name at all
    b"Content-Disposition: attachment; filename*0*=utf-8''informe%20de; filename*1*=%20fallas.pdf",
    b'Content-Disposition: attachment; filename="=?utf-8?B?Y2FwdHVyYSBkZSBwYW50YWxsYS5wbmc=?="',
    b"Content-Disposition: attachment",
    # a comment (policy.default drops it and what follows), a plain quoted name, a folded one
    b"Content-Disposition: attachment; filename=a(b)c.pdf",
    b'Content-Disposition: attachment; filename="informe (final); v2.pdf"',
    b'Content-Disposition: attachment;\r\n\tfilename="informe.pdf"',
]


def _with_attachment(disposition: bytes) -> bytes:
    return (
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nHola\r\n--b\r\n"
        b"Content-Type: application/pdf\r\n" + disposition + b"\r\n\r\nJVBERi0=\r\n--b--\r\n"
    )


@pytest.mark.parametrize(
    "raw",
    [
        *[fixture(p.name) for p in sorted(FIXTURES.glob("*.eml"))],
        *[_with_attachment(d) for d in ODD_FILENAMES],
    ],
)
def test_extraction_reads_the_body_exactly_as_the_default_policy(raw, monkeypatch) -> None:
    """Plain mail parsed by compat32, the rest by policy.default with each header parsed once
    (MemoPolicy): text, HTML, attachments, notes and DSN facts are those policy.default gives."""
    from adapters.email import body as body_module

    fast = extract_body(raw, 10_000_000)
    monkeypatch.setattr(body_module, "parse_message", _with_default_policy)
    assert fast == extract_body(raw, 10_000_000)


PLAIN_FIXTURES = [
    "base64_attachments.eml",
    "html_only.eml",
    "latin1_qp.eml",
    "mailing_list.eml",
    "no_from.eml",
    "outlook_ooo.eml",
    "unknown_charset.eml",
    "windows1252.eml",
]


@pytest.mark.parametrize(
    "raw",
    [
        *[fixture(name) for name in PLAIN_FIXTURES],
        _with_attachment(b'Content-Disposition: attachment; filename="informe (final); v2.pdf"'),
        _with_attachment(b'Content-Disposition: attachment;\r\n\tfilename="informe.pdf"'),
    ],
)
def test_plain_customer_mail_skips_the_header_registry(raw: bytes) -> None:
    """Everyday mail (text, HTML, QP or base64 parts, plain file names, folded parameters) is
    parsed the cheap way: compat32, not policy.default's header parser (half the time)."""
    from email.message import EmailMessage

    from adapters.email.body import parse_message

    msg = parse_message(raw)
    assert not isinstance(msg, EmailMessage) and msg.policy.__class__.__name__ == "Compat32"


@pytest.mark.parametrize(
    "raw",
    [
        *[fixture(name) for name in ("dsn.eml", "forwarded.eml", "broken_boundary.eml")],
        *[_with_attachment(d) for d in ODD_FILENAMES[:2]],  # RFC 2231, RFC 2047
        _with_attachment(b"Content-Disposition: attachment; filename=a(b)c.pdf"),  # a comment
        _with_attachment(b"Content-Disposition: attachment; filename=\xc3\xb1.pdf"),  # 8-bit
        _with_attachment(b"Content-Disposition: attachment; filename = x.pdf"),
        _with_attachment(b'Content-Disposition: attachment; filename="a\\"b.pdf"'),
    ],
)
def test_mail_outside_the_plain_form_is_read_by_the_default_policy(raw: bytes) -> None:
    """Bounces, forwards, broken MIME and any parameter compat32 would read differently go
    through policy.default (the answers the extraction is held to)."""
    from email.message import EmailMessage

    from adapters.email.body import parse_message

    assert isinstance(parse_message(raw), EmailMessage)


@pytest.mark.parametrize("name", ["dsn.eml", "forwarded.eml"])
def test_a_bounce_or_a_forward_is_parsed_once(name: str, monkeypatch) -> None:
    """A `message/*` part is never plain: such mail goes straight to policy.default, without a
    compat32 parse first that would be thrown away."""
    from email.parser import BytesParser

    from adapters.email import body as body_module

    policies: list[str] = []

    class Counting(BytesParser):
        def parsebytes(self, text: bytes, headersonly: bool = False) -> Any:
            policies.append(type(self.parser.policy).__name__)
            return super().parsebytes(text, headersonly)

    monkeypatch.setattr(body_module, "BytesParser", Counting)
    body = extract_body(fixture(name), 10_000_000)
    assert policies == ["MemoPolicy"] and body.text
