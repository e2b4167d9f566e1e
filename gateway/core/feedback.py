"""What a customer's message on a resolved or closed incident means: a 1-5 satisfaction answer,
a bare "thank you", or a real message (which reopens it or starts a follow-up).

The classification is pure (`classify_follow_up`, tested with plain tables); `record` writes the
outcome inside the intake's transaction. The `csat` column and the indexes that find a recently
resolved conversation are this module's own migration component ("feedback").
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta
from typing import Literal

from gateway.core.timeutil import iso, parse_iso
from gateway.store.migration import Migration
from gateway.store.tx import Row, Tx

FollowUp = Literal["csat", "thanks", "message"]
DONE_STATUSES = ("resolved", "closed")

MIGRATIONS: list[Migration] = [
    Migration(
        1,
        """
        ALTER TABLE incidents ADD COLUMN csat INTEGER;
        ALTER TABLE incidents ADD COLUMN csat_at TEXT;
        CREATE INDEX incidents_done ON incidents(level, updated_at)
            WHERE status IN ('resolved', 'closed');
        CREATE INDEX incidents_conversation_done ON incidents(conversation_key, id)
            WHERE status IN ('resolved', 'closed');
        """,
        """
        ALTER TABLE incidents ADD COLUMN csat integer;
        ALTER TABLE incidents ADD COLUMN csat_at timestamptz;
        CREATE INDEX incidents_done ON incidents(level, updated_at)
            WHERE status IN ('resolved', 'closed');
        CREATE INDEX incidents_conversation_done ON incidents(conversation_key, id)
            WHERE status IN ('resolved', 'closed');
        """,
    )
]

# "5", "5.", "4/5", "4 de 5", "5 out of 5", "3 estrellas", "5 ⭐", "5️⃣", "⭐⭐⭐⭐".
_SCORE = re.compile(
    r"^([1-5])(?:\ufe0f?\u20e3)?\s*(?:(?:/|de|of|out of|sobre)\s*5)?\s*"
    r"(?:estrellas?|stars?|puntos?|points?|\u2b50+)?\s*[.!]*$",
    re.IGNORECASE,
)
_STARS = re.compile(r"^(?:\u2b50\ufe0f?){1,5}$")
# A message made only of these words (and the emoji below) says thanks and asks nothing.
THANKS_WORDS = frozenset(
    """
    gracias muchas muchisimas mil ok okay okey oki vale listo perfecto perfecta excelente genial
    buenisimo bien muy todo super dale entendido recibido amable saludos bendiciones igualmente
    thanks thank you thx ty so much many great perfect good fine cool got it noted all set
    """.split()
)
THANKS_EMOJI = frozenset("👍👌🙏😊🙂😀😃😄👏✅❤💙💯🤝🫶✨🌟🙌☺")
MAX_THANKS_CHARS = 60
# Where a mail client starts quoting the message being answered.
_QUOTE_START = re.compile(
    r"^(>|-{2,}\s*(original message|mensaje original)|(on|el)\s.+(wrote|escribió):\s*$"
    r"|(de|from):\s.+@)",
    re.IGNORECASE,
)


def reply_part(text: str) -> str:
    """The customer's own words of a reply: the lines before the quoted message."""
    kept: list[str] = []
    for line in (text or "").splitlines():
        if _QUOTE_START.match(line.strip()):
            break
        kept.append(line)
    return "\n".join(kept).strip()


def csat_score(text: str) -> int | None:
    """A satisfaction answer of 1 to 5 given alone, or None."""
    value = reply_part(text).strip()
    if _STARS.match(value):
        return value.count("\u2b50")
    match = _SCORE.match(value)
    return int(match.group(1)) if match else None


def is_thanks(text: str) -> bool:
    """A short message that only thanks or agrees ("gracias", "ok", "👍"), asking nothing."""
    value = reply_part(text)
    if not value or len(value) > MAX_THANKS_CHARS:
        return False
    plain = unicodedata.normalize("NFKD", value.lower())
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    emoji = [c for c in plain if c in THANKS_EMOJI]
    words = re.sub(r"[^\w\s]", " ", "".join(c for c in plain if c not in THANKS_EMOJI)).split()
    return bool(emoji or words) and all(w in THANKS_WORDS for w in words)


def classify_follow_up(
    text: str,
    *,
    status: str,
    resolved_at: datetime | None,
    closed_at: datetime | None,
    now: datetime,
    csat_window: timedelta,
    thanks_window: timedelta,
    has_files: bool = False,
) -> tuple[FollowUp, int | None]:
    """What a customer's message on an incident means, with the score of a CSAT answer.

    Only a resolved or closed incident takes answers: a score within `csat_window` of the
    resolution (when the question was asked), a thanks within `thanks_window` of the last
    resolution or closure. Anything else, or anything with files, is a real message.
    """
    if status not in DONE_STATUSES or resolved_at is None or has_files:
        return "message", None
    score = csat_score(text)
    if score is not None and now - resolved_at <= csat_window:
        return "csat", score
    last = max(resolved_at, closed_at) if closed_at else resolved_at
    if is_thanks(text) and now - last <= thanks_window:
        return "thanks", None
    return "message", None


def recent_conversation(tx: Tx, key: str, now: datetime, window: timedelta) -> Row | None:
    """The contact's newest resolved or closed incident of a conversation, if recent enough."""
    row = tx.one(
        "SELECT * FROM incidents WHERE conversation_key = ?"
        " AND status IN ('resolved', 'closed') ORDER BY id DESC LIMIT 1",
        (key,),
    )
    if row is None:
        return None
    last = parse_iso(row["closed_at"]) or parse_iso(row["resolved_at"])
    return row if last is not None and now - last <= window else None


def classify_row(
    row: Row, text: str, now: datetime, windows: tuple[timedelta, timedelta], has_files: bool
) -> tuple[FollowUp, int | None]:
    """`classify_follow_up` for an incident row."""
    return classify_follow_up(
        text,
        status=row["status"],
        resolved_at=parse_iso(row["resolved_at"]),
        closed_at=parse_iso(row.get("closed_at")),
        now=now,
        csat_window=windows[0],
        thanks_window=windows[1],
        has_files=has_files,
    )


def record(tx: Tx, row: Row, kind: FollowUp, score: int | None, now: datetime) -> None:
    """Write a CSAT answer or a thanks on the incident; its status does not change."""
    if kind == "csat":
        previous = row.get("csat")
        tx.update_incident(row["id"], {"csat": score, "csat_at": iso(now), "updated_at": iso(now)})
        detail = {"score": score, **({"previous": previous} if previous else {})}
        tx.insert_event(row["id"], now, "customer", "csat_recorded", detail)
    elif kind == "thanks":
        tx.insert_event(row["id"], now, "customer", "thanks_recorded", {"status": row["status"]})


def csat_summary(rows: list[Row]) -> dict[str, object]:
    """The month's satisfaction answers: how many, their average, and how many of each score."""
    scores = [int(r["csat"]) for r in rows if r.get("csat")]
    counts = {str(n): scores.count(n) for n in range(1, 6)}
    average = round(sum(scores) / len(scores), 2) if scores else None
    return {"answers": len(scores), "average": average, "by_score": counts}
