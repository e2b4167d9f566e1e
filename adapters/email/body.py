"""Body extraction of an inbound mail, done after the `250` (the raw message is already stored).

Pure: raw bytes → `Body` (text, sanitised HTML, attachments, forwarded messages, DSN facts).
Reads what `email.policy.default` reads (each header parsed once per message: `MemoPolicy`), but
parses a plainly well-formed message with `compat32`, which gives the same answers for it at half
the cost (`parse_message`); prefers text/plain, else HTML converted to text. Never
raises: a message it cannot read comes back `degraded` with the best text it could recover.
Callers bound its time (it runs in a worker thread under `email.parse_timeout`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import EmailPolicy, compat32
from typing import Any

from adapters.email import boundary
from adapters.email.html import html_to_text
from adapters.email.parse import decode_bytes, decode_words, message_ids, plain_address
from gateway.core.model import AttachmentIn

MAX_PARTS = 500  # parts walked per message (deep nesting / part bombs, checklist E14)
MAX_TEXT_CHARS = 200_000
MAX_MULTIPARTS = 100  # more declared boundaries than this: not parsed at all (nesting bombs)
BOUNDARY_DEFECTS = (
    "StartBoundaryNotFoundDefect",
    "CloseBoundaryNotFoundDefect",
    "MultipartInvariantViolationDefect",
    "NoBoundaryInMultipartDefect",
)


class _Registry(HeaderRegistry):
    """The standard header registry, except that each header class is made once.

    HeaderRegistry builds a new class with type() on every header it parses (~50 us each);
    the classes it builds for one registered kind are interchangeable, so one is kept per kind
    (a bounded set: unknown names all share the default kind)."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[type, type] = {}

    def __getitem__(self, name: str) -> Any:
        cls = self.registry.get(name.lower(), self.default_class)
        made = self._made.get(cls)
        if made is None:
            made = self._made[cls] = super().__getitem__(name)
        return made


# Every parse of a message with parts compiled a regular expression per boundary before 3.13.
boundary.install()
_REGISTRY = _Registry()
HEADER_CLASSES = _REGISTRY  # for policies that build mail (adapters.email.send)


class MemoPolicy(EmailPolicy):
    """`email.policy.default`, except that a header is parsed once per message.

    The default policy parses a header's value each time it is read, and the parser and our walk
    read Content-Type and friends dozens of times per message (measured on an 8 KB multipart
    message: 43 reads, 2.9 ms of 3.0 ms extraction in header parsing; memoised, ~1.1 ms). The
    same (name, value) always parses to the same immutable header object, so the answers are
    those of `policy.default`. One instance per parse: no header is kept across messages.
    """

    def __init__(self, **kw: Any):
        super().__init__(**{"header_factory": _REGISTRY, **kw})
        object.__setattr__(self, "_memo", {})  # policies are frozen once built

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if hasattr(value, "name"):  # already a header object (as policy.default checks)
            return value
        memo: dict[tuple[str, str], Any] = self._memo  # type: ignore[attr-defined]
        key = (name, value)
        header = memo.get(key)
        if header is None:
            header = memo[key] = super().header_fetch_parse(name, value)
        return header


# The MIME headers the extraction reads, in the plain RFC 2045 form on which compat32's parameter
# splitting and policy.default's header parser agree: a type, then `; name=token` or
# `; name="text"` parameters, folding allowed between them. Not plain (so parsed by
# policy.default): comments, RFC 2231 (`name*=`), RFC 2047 words, backslashes, non-ASCII,
# spaces around `=`, a trailing `;`.
_FWS = r"(?:[ \t]|\r?\n[ \t])*"
_TOKEN = r"[!#$%&+\-.^_`{|}~0-9A-Za-z]+"
_VALUE = rf'(?:{_TOKEN}|"(?:[^"\\=\r\n\x80-\uffff]|=(?!\?))*")'
_PARAMS = rf"(?:{_FWS};{_FWS}{_TOKEN}={_VALUE})*{_FWS}"
_PLAIN = {
    "content-type": re.compile(rf"{_FWS}{_TOKEN}/{_TOKEN}{_PARAMS}"),
    "content-disposition": re.compile(rf"{_FWS}{_TOKEN}{_PARAMS}"),
    "content-transfer-encoding": re.compile(rf"{_FWS}{_TOKEN}{_FWS}"),
}


def _plain(msg: Message) -> bool:
    """No parse defect, no message/* part, every MIME header in the plain form (`_PLAIN`)."""
    for part in msg.walk():
        if part.defects:
            return False
        ctype = part.get_content_type()
        if ctype.startswith("message/") or ctype == "text/rfc822-headers":
            return False  # DSN fields and forwarded headers: read as policy.default reads them
        for name, value in part.items():
            grammar = _PLAIN.get(name.lower())
            if grammar is not None and not (isinstance(value, str) and grammar.fullmatch(value)):
                return False
    return True


def parse_message(raw: bytes, lowered: bytes | None = None) -> Message:
    """`raw` parsed so that the extraction reads what `email.policy.default` gives.

    A plainly well-formed message (`_plain`: most customer mail) is parsed with compat32, whose
    header handling agrees with policy.default's on that form and costs half as much (8 KB
    multipart: 225 against 463 µs); anything else with policy.default, headers memoised. A
    bounce or a forwarded message (`message/*`, `rfc822-headers`) is never plain: it goes to
    policy.default without the compat32 attempt. `lowered` is `raw.lower()`, when the caller
    has it already."""
    lowered = raw.lower() if lowered is None else lowered
    if b"message/" not in lowered and b"rfc822-headers" not in lowered:
        try:
            msg = BytesParser(policy=compat32).parsebytes(raw)
            if _plain(msg):
                return msg
        except Exception:  # compat32 trips on some broken parameters; policy.default reads them
            pass
    parsed = BytesParser(policy=MemoPolicy()).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


@dataclass
class Body:
    """What an agent reads of a message."""

    text: str = ""
    html: str | None = None
    attachments: list[AttachmentIn] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # agent-facing remarks (Spanish)
    degraded: bool = False
    original_ids: list[str] = field(default_factory=list)  # DSN: Message-IDs reported on
    failed_recipients: list[str] = field(default_factory=list)
    diagnostic: str = ""


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload() or "")
    return decode_bytes(payload, part.get_content_charset())


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    return decode_words(name) or "adjunto"


def _dsn_facts(part: Message, body: Body) -> None:
    """RFC 3464: message/delivery-status fields, and the returned message's Message-ID."""
    ctype = part.get_content_type()
    if ctype == "message/delivery-status":
        for block in part.get_payload() or []:
            if not isinstance(block, Message):
                continue
            for key in ("Final-Recipient", "Original-Recipient"):
                value = str(block.get(key, "")).partition(";")[2]
                addr = plain_address(value)
                if addr and addr not in body.failed_recipients:
                    body.failed_recipients.append(addr)
            status = str(block.get("Status", "")).strip()
            diag = str(block.get("Diagnostic-Code", "")).partition(";")[2].strip()
            if status or diag:
                body.diagnostic = " ".join(f"{status} {diag}".split())[:500]
    elif ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
        inner = part.get_payload(0) if part.is_multipart() else None
        if isinstance(inner, Message):
            ids = message_ids(inner.get("Message-ID"))
        else:
            ids = [
                i
                for line in _text_of(part).splitlines()
                if line.lower().startswith("message-id:")
                for i in message_ids(line)
            ]
        body.original_ids.extend(i for i in ids if i not in body.original_ids)


def _walk(msg: Message, body: Body, max_bytes: int) -> tuple[str, str]:
    plain: list[str] = []
    htmls: list[str] = []
    stack: list[tuple[Message, bool]] = [(msg, False)]
    seen = 0
    while stack:
        part, forwarded = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            body.degraded = True
            body.notes.append(f"Mensaje con más de {MAX_PARTS} partes: resto no procesado.")
            break
        ctype = part.get_content_type()
        _dsn_facts(part, body)
        if part.is_multipart():
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend(
                    (c, forwarded or ctype == "message/rfc822") for c in reversed(children)
                )
            continue
        disposition = part.get_content_disposition()
        if ctype in ("text/plain", "text/html") and disposition != "attachment":
            (plain if ctype == "text/plain" else htmls).append(
                ("\n---- Mensaje reenviado ----\n" if forwarded else "") + _text_of(part)
            )
            continue
        if ctype.startswith("multipart/"):
            continue  # a multipart whose boundary is missing: its text is recovered below
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        name = _filename(part)
        if len(data) > max_bytes:
            body.notes.append(f"Adjunto omitido: {name} ({len(data)} bytes) supera el límite.")
            continue
        body.attachments.append(
            AttachmentIn(
                filename=name[:200],
                content_type=ctype,
                size=len(data),
                data=data,
                inline=disposition == "inline" or bool(part.get("Content-ID")),
            )
        )
    return "\n\n".join(p.strip() for p in plain if p.strip()), "\n".join(htmls)


def fallback_text(raw: bytes) -> str:
    head, _, rest = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    return (rest or head).decode("utf-8", errors="replace")[:MAX_TEXT_CHARS]


_BOUNDARY_LINE = re.compile(rb"^--([0-9A-Za-z'()+_,./:=?-]{1,70})\r?$", re.MULTILINE)


def _reparse(msg: Message) -> Message:
    """A multipart whose declared boundary never appears: retry with the one the body uses."""
    payload = msg.get_payload()
    found = (
        _BOUNDARY_LINE.search(payload.encode("utf-8", "surrogateescape"))
        if isinstance(payload, str)
        else None
    )
    if found is None:
        return msg
    msg.set_boundary(found.group(1).decode("ascii"))
    again = parse_message(msg.as_bytes())
    return again if again.is_multipart() else msg


def extract_body(raw: bytes, max_attachment_bytes: int) -> Body:
    """The readable body, attachments and DSN facts of a raw message; never raises."""
    body = Body()
    lowered = raw.lower()
    if lowered.count(b"boundary=") > MAX_MULTIPARTS:
        body.degraded = True
        body.notes.append(f"Más de {MAX_MULTIPARTS} niveles o partes MIME: no se interpretó.")
        body.text = fallback_text(raw)[:20_000]
        body.text = (body.text.rstrip() + "\n\n" + f"[{body.notes[0]}]").strip()
        return body
    try:
        msg = parse_message(raw, lowered)
        if any(type(d).__name__ in BOUNDARY_DEFECTS for d in msg.defects):
            body.degraded = True  # flagged for an operator even when recovered
            body.notes.append("Estructura MIME dañada: revisar el mensaje original.")
            msg = _reparse(msg)
        plain, htmls = _walk(msg, body, max_attachment_bytes)
        if plain:
            body.text = plain
        if htmls.strip():
            text, safe = html_to_text(htmls)
            body.html = safe or None
            body.text = body.text or text
        if not body.text and msg.get_content_maintype() == "multipart" and not msg.is_multipart():
            body.text = fallback_text(raw)  # boundary never found: the whole body is text
    except Exception as exc:  # RecursionError on deep nesting, bad encodings: keep the raw
        body.degraded = True
        body.notes.append(f"No se pudo interpretar el mensaje ({type(exc).__name__}).")
        body.text = fallback_text(raw)
    if body.degraded and not body.text.strip():
        body.text = fallback_text(raw)
    if body.notes:
        body.text = (body.text.rstrip() + "\n\n" + "\n".join(f"[{n}]" for n in body.notes)).strip()
    body.text = body.text.replace("\r\n", "\n").replace("\r", "\n")[:MAX_TEXT_CHARS]
    return body
