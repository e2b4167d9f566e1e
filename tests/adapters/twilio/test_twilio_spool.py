"""The Twilio fallback spool on a real directory: durable files, arrival order, replay semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.twilio.spool import REJECTED, TwilioSpool
from gateway.core.errors import Rejected, Shunted, TemporaryFailure

FORM = [("MessageSid", "SM1"), ("Body", "hola"), ("MediaUrl0", "a"), ("MediaUrl0", "b")]


def spool_at(tmp_path: Path) -> TwilioSpool:
    return TwilioSpool(tmp_path / "spool")


def test_a_spooled_form_is_one_complete_file_read_back_whole(tmp_path: Path) -> None:
    spool = spool_at(tmp_path)
    path = spool.put("whatsapp", FORM, "https://x/wa/fallback", "sig=", "2026-11-30T15:00:00Z")
    assert path.parent == tmp_path / "spool" and oct(path.stat().st_mode)[-3:] == "600"
    assert [p.name for p in (tmp_path / "spool").iterdir()] == [path.name]  # no temporary left
    [item] = spool.items()
    assert (item.kind, item.pairs, item.signature) == ("whatsapp", FORM, "sig=")


def test_half_written_and_unreadable_files_are_not_replayed(tmp_path: Path) -> None:
    spool = spool_at(tmp_path)
    spool.put("whatsapp", FORM, "u", "s", "t")
    (tmp_path / "spool" / ".0001-crash.json.tmp").write_bytes(b'{"kind": "whats')
    (tmp_path / "spool" / "0002-garbage.json").write_bytes(b"\x00not json")
    items = spool.items()
    assert len(items) == 1
    assert (tmp_path / "spool" / REJECTED / "0002-garbage.json").exists()


async def test_replay_commits_in_order_and_stops_while_the_database_is_away(
    tmp_path: Path,
) -> None:
    spool = spool_at(tmp_path)
    for n in range(3):
        spool.put("whatsapp", [("MessageSid", f"SM{n}")], "u", "s", "t")
    seen: list[str] = []
    down = True

    async def process(pairs: list[tuple[str, str]]) -> None:
        if down:
            raise TemporaryFailure("database locked")
        seen.append(dict(pairs)["MessageSid"])

    spool.register("whatsapp", process)
    assert await spool.replay() == (0, 3)
    assert len(spool.items()) == 3  # nothing lost while it waits
    down = False
    assert await spool.replay() == (3, 0)
    assert seen == ["SM0", "SM1", "SM2"] and spool.items() == []


async def test_a_form_the_intake_refuses_is_set_aside_not_retried_forever(tmp_path: Path) -> None:
    spool = spool_at(tmp_path)
    spool.put("whatsapp", [("MessageSid", "")], "u", "s", "t")
    spool.put("whatsapp", [("MessageSid", "SM9")], "u", "s", "t")

    async def process(pairs: list[tuple[str, str]]) -> None:
        if not dict(pairs)["MessageSid"]:
            raise Rejected("MessageSid is missing or malformed", field="MessageSid")

    spool.register("whatsapp", process)
    assert await spool.replay() == (1, 0)
    assert len(list((tmp_path / "spool" / REJECTED).iterdir())) == 1


@pytest.mark.parametrize("kind", ["voice", ""])
async def test_a_form_of_an_unknown_kind_is_set_aside(tmp_path: Path, kind: str) -> None:
    spool = spool_at(tmp_path)
    spool.put(kind, FORM, "u", "s", "t")
    assert await spool.replay() == (0, 0)
    assert spool.items() == [] and len(list((tmp_path / "spool" / REJECTED).iterdir())) == 1


async def test_a_poison_form_never_holds_the_others_back(tmp_path: Path) -> None:
    """One form hits a processing bug (shunted: kept in the database for `replay`), another
    crashes the adapter's own parsing: the forms behind them are still replayed."""
    spool = spool_at(tmp_path)
    for sid in ("SM-bug", "SM-crash", "SM-ok"):
        spool.put("whatsapp", [("MessageSid", sid)], "u", "s", "t")
    seen: list[str] = []

    async def process(pairs: list[tuple[str, str]]) -> None:
        sid = dict(pairs)["MessageSid"]
        if sid == "SM-bug":
            raise Shunted("the message could not be processed; it is kept")
        if sid == "SM-crash":
            raise KeyError("From")
        seen.append(sid)

    spool.register("whatsapp", process)
    assert await spool.replay() == (2, 0)  # the shunted one is in the database now
    assert seen == ["SM-ok"] and spool.items() == []
    assert len(list((tmp_path / "spool" / REJECTED).iterdir())) == 1  # the crash, for a person
