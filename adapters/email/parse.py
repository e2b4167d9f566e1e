"""Headers-only reading of an inbound mail: what must be decided before the SMTP `250`.

Pure: raw bytes in, `HeaderFacts` out (dedupe key, sender, threading ids, loop and
auto-reply flags). Parses only the header block with `compat32` (cheap, never raises on
odd input); the body is extracted later by `body`. No I/O, no clock.
"""

from __future__ import annotations

import hashlib
import re
from binascii import a2b_qp
from collections.abc import Collection
from dataclasses import dataclass
from email.header import decode_header
from email.utils import parseaddr

from gateway.core.language import detect_language
from gateway.core.tracking import find_tracking

MAX_HEADER_BYTES = 256 * 1024  # a 200 KB header block is parsed only this far (checklist E14)
MAX_VALUE_CHARS = 4000  # one header value; caps nested-comment addresses (eml_parser-style DoS)
MAX_RECEIVED = 30  # RFC 5321 §6.3: more hops than this is a mail loop
MSGID = re.compile(r"<[^<>\s]{1,250}>")
ADDRESS = re.compile(r"^[^@\s<>()\[\]\\,;:\"]{1,64}@[A-Za-z0-9.-]{1,253}$")
# Flags that mean "never answer automatically" (RFC 3834 §2, §3.1).
NO_ACK_FLAGS = frozenset(
    {
        "null_sender",
        "bounce",
        "auto_submitted",
        "bulk",
        "mailing_list",
        "auto_response_suppressed",
        "own_address",
    }
)


@dataclass(frozen=True)
class HeaderFacts:
    """What the headers say, enough to dedupe, thread and decide on an acknowledgement."""

    provider_id: str
    message_id: str | None
    from_name: str | None
    from_address: str | None
    subject: str
    references: tuple[str, ...]
    tracking_hints: tuple[str, ...]
    flags: tuple[str, ...]
    loop: str | None  # why the message is refused as a mail loop, else None
    content_type: str
    language: str | None  # from the subject and the first text of the body, if clear

    @property
    def acknowledge(self) -> bool:
        """True unless RFC 3834 says an automatic answer must not be sent."""
        return not NO_ACK_FLAGS.intersection(self.flags)

    @property
    def is_bounce(self) -> bool:
        """A delivery report (DSN) or a mailer daemon's notice."""
        return "bounce" in self.flags


def header_block(raw: bytes) -> bytes:
    """The bytes before the first empty line, capped at MAX_HEADER_BYTES."""
    head = raw[:MAX_HEADER_BYTES]
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = head.find(sep)
        if end >= 0:
            return head[: end + len(sep)]
    return head


def body_peek(raw: bytes, start: int, size: int = 600) -> str:
    """The first bytes of the body as rough text (QP undone, tags and all): enough to guess
    the writer's language before the real extraction (which happens after the commit)."""
    chunk = raw[start : start + size]
    if b"=\r\n" in chunk or b"=3D" in chunk or b"=C3" in chunk or b"=E9" in chunk:
        chunk = a2b_qp(chunk)
    return chunk.decode("utf-8", errors="replace")


def decode_words(value: str | None) -> str:
    """An RFC 2047 header value as text; unknown charsets decoded with replacement chars."""
    if not value:
        return ""
    value = str(value)[:MAX_VALUE_CHARS]
    if "=?" not in value:
        return clean_line(value)  # no RFC 2047 encoded word: nothing to decode
    try:
        parts = decode_header(value)
    except Exception:  # malformed encoded words: keep the raw text
        return clean_line(value)
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        out.append(decode_bytes(chunk, charset))
    return clean_line("".join(out))


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes in a declared charset; Latin-1 read as Windows-1252 (WHATWG), unknown as UTF-8."""
    name = (charset or "utf-8").strip().lower()
    if name in ("iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii"):
        name = "cp1252"  # what senders declaring Latin-1 actually send (smart quotes, €)
    try:
        return data.decode(name, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def clean_line(value: str) -> str:
    """One line of text: CR, LF and other control characters become spaces, runs collapse."""
    if not value.isprintable():
        value = "".join(c if c.isprintable() else " " for c in value)
    return " ".join(value.split())


def message_ids(value: str | None) -> list[str]:
    """The `<id>` tokens of a Message-ID / In-Reply-To / References value, in order."""
    return MSGID.findall(str(value or "")[: MAX_VALUE_CHARS * 4])


def plain_address(value: str | None) -> str | None:
    """A lower-cased addr-spec if `value` is one plain mailbox, else None."""
    value = (value or "").strip().strip("<>").strip()
    return value.lower() if ADDRESS.match(value) else None


_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_FIELD_NAME = re.compile(rb"^[!-9;-~]+$")  # RFC 5322 §3.6.8: printable ASCII except ':'
_NAME_ADDR = re.compile(r'^\s*(?:"((?:[^"\\]|\\.)*)"|([^"<>]*?))\s*<([^<>\s]*)>\s*$')
Headers = dict[str, list[str]]


def split_headers(block: bytes) -> Headers:
    """RFC 5322 §2.2: the fields of a header block, unfolded, by lower-cased name (no
    email.parser cost)."""
    fields: Headers = {}
    for line in _FOLD.sub(b"", block).splitlines():
        name, sep, value = line.partition(b":")
        if not sep or not _FIELD_NAME.match(name):
            continue  # an mbox "From " line or garbage: not a field
        try:
            text = value.decode("utf-8")  # RFC 6532 allows UTF-8 in headers
        except UnicodeDecodeError:
            text = value.decode("cp1252", errors="replace")
        fields.setdefault(name.decode("ascii").lower(), []).append(text.strip())
    return fields


def content_type(headers: Headers) -> tuple[str, dict[str, str]]:
    """The Content-Type (RFC 2045 §5.1; text/plain when absent or invalid) and its parameters."""
    value = (headers.get("content-type") or ["text/plain"])[0]
    kind, *params = value.split(";")
    kind = kind.strip().lower()
    if kind.count("/") != 1:
        kind = "text/plain"
    out = {}
    for param in params:
        key, _, val = param.partition("=")
        out[key.strip().lower()] = val.strip().strip('"')
    return kind, out


def _from(headers: Headers) -> tuple[str | None, str | None]:
    value = (headers.get("from") or [None])[0]
    if value is None:
        return None, None
    value = value[:MAX_VALUE_CHARS]
    match = _NAME_ADDR.match(value)
    if match:
        name = match.group(1) if match.group(1) is not None else match.group(2)
        name = re.sub(r"\\(.)", r"\1", name or "")
        return (decode_words(name) or None), plain_address(match.group(3))
    if plain_address(value):
        return None, plain_address(value)
    try:  # comments and other rare forms: the standard library's parser, on a capped value
        name, addr = parseaddr(value)
    except Exception:  # deeply nested comments and the like: no usable sender
        return None, None
    return (decode_words(name) or None), plain_address(addr)


def _first(headers: Headers, name: str, default: str = "") -> str:
    return (headers.get(name) or [default])[0]


def _flags(headers: Headers, mail_from: str, sender: str | None, own: Collection[str]) -> list[str]:
    flags = []
    if mail_from in ("", "<>"):
        flags.append("null_sender")  # RFC 5321 §4.5.5: notifications use the null path
    local = (sender or "").partition("@")[0]
    ctype, params = content_type(headers)
    report = params.get("report-type", "").lower()
    if local in ("mailer-daemon", "postmaster") or (
        ctype == "multipart/report" and report == "delivery-status"
    ):
        flags.append("bounce")  # RFC 3464 delivery status notification
    auto = _first(headers, "auto-submitted", "no").split(";")[0].strip().lower()
    if auto != "no" or (ctype == "multipart/report" and report != "delivery-status"):
        flags.append("auto_submitted")  # RFC 3834 §5; read receipts (RFC 8098)
    if "x-autoreply" in headers or "x-autorespond" in headers:
        flags.append("auto_submitted")
    if _first(headers, "precedence").strip().lower() in ("bulk", "list", "junk"):
        flags.append("bulk")
    if "list-id" in headers:
        flags.append("mailing_list")  # RFC 2919
    if "x-auto-response-suppress" in headers:
        flags.append("auto_response_suppressed")  # Microsoft [MS-OXCMAIL] 2.2.3.2.20
    if sender and sender in own:
        flags.append("own_address")
    if sender is None:
        flags.append("no_from")
    return sorted(set(flags))


def read_headers(
    raw: bytes, *, mail_from: str, own_addresses: Collection[str], loop_id: str
) -> HeaderFacts:
    """Decide from the header block alone; never raises on malformed input."""
    block = header_block(raw)
    headers = split_headers(block)
    own = {a.lower() for a in own_addresses}
    name, address = _from(headers)
    envelope = plain_address(mail_from)
    ids = message_ids(_first(headers, "message-id"))
    message_id = ids[0] if ids else None
    refs = message_ids(_first(headers, "in-reply-to")) + message_ids(_first(headers, "references"))
    subject = decode_words(_first(headers, "subject"))[:500]
    flags = _flags(headers, mail_from, address, own)
    loop = None
    received = len(headers.get("received", ()))
    if received > MAX_RECEIVED:
        loop = f"{received} Received headers"
    elif any(v.lower() == loop_id.lower() for v in headers.get("x-loop", ())):
        loop = "our own X-Loop header"
    who = address or envelope or "unknown"
    if message_id:
        provider_id = f"{message_id} {who}"  # same Message-ID from another sender is another mail
    else:
        provider_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    return HeaderFacts(
        provider_id=provider_id,
        message_id=message_id,
        from_name=name,
        from_address=address or (envelope if "null_sender" not in flags else None),
        subject=subject,
        references=tuple(dict.fromkeys(refs))[-50:],
        tracking_hints=tuple(find_tracking(subject)),
        flags=tuple(flags),
        loop=loop,
        content_type=content_type(headers)[0],
        language=detect_language(f"{subject}\n{body_peek(raw, len(block))}"),
    )


def degraded_facts(raw: bytes, mail_from: str) -> HeaderFacts:
    """Facts for a message whose headers could not be read: keyed by its hash, never answered."""
    return HeaderFacts(
        provider_id="sha256:" + hashlib.sha256(raw).hexdigest(),
        message_id=None,
        from_name=None,
        from_address=plain_address(mail_from),
        subject="",
        references=(),
        tracking_hints=(),
        flags=("auto_submitted", "parse_degraded"),  # unknown sender intent: no auto-answer
        loop=None,
        content_type="text/plain",
        language=None,
    )
