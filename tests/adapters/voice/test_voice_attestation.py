"""Caller ID is not identity (issue #15 item 3), through signed Twilio voice webhooks.

Only a number with STIR/SHAKEN attestation A (`StirVerstat=TN-Validation-Passed-A`) joins its
open incident and hears its tracking number. Any other caller gets a new incident and is asked
(<Gather>) for an existing case's number, which is linked and read out only when that case's
proven phone is the calling number.
"""

from __future__ import annotations

from typing import Any

import pytest
from multidict import MultiDict

from tests.adapters.twilio.voice_kit import (
    ACCOUNT_SID,
    PUBLIC_URL,
    VOICE_ADAPTERS,
    get_incident,
    kinds,
    post_signed,
    twiml,
    voice_form,
)
from tests.adapters.voice.test_voice_inbound import CALLER, MX_LINE, tracking_in
from tests.conftest import CLOSED_TIME

SPOOFED = {"StirVerstat": None}  # most international calls: no attestation at all


async def call(client: Any, sid: str, caller: str = CALLER, **extra: str | None) -> Any:
    resp = await post_signed(
        client, "/webhooks/twilio/voice", voice_form(sid, caller, MX_LINE, **extra)
    )
    assert resp.status == 200, await resp.text()
    return twiml(await resp.text())


def case_digits(tracking: str) -> str:
    return tracking.replace("CMW-", "").replace("-", "")


async def key_in(client: Any, root: Any, digits: str, caller: str = CALLER) -> Any:
    """The caller keys digits into the <Gather>: Twilio posts them to its action URL."""
    gather = root.find("Gather")
    assert gather is not None
    action = gather.get("action").removeprefix(PUBLIC_URL)
    form = MultiDict(
        AccountSid=ACCOUNT_SID,
        CallSid="CA" + "f" * 32,
        CallStatus="in-progress",
        Digits=digits,
        Direction="inbound",
        From=caller,
        To=MX_LINE,
        FinishedOnKey="#",
    )
    resp = await post_signed(client, action, form)
    assert resp.status == 200, await resp.text()
    return twiml(await resp.text())


@pytest.mark.parametrize(
    "verstat", [None, "TN-Validation-Passed-B", "TN-Validation-Passed-C", "TN-Validation-Failed-A"]
)
async def test_a_call_without_attestation_a_gets_a_new_incident_and_is_asked(
    start_app: Any, voice_settings: Any, agent_token: Any, verstat: str | None
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    mine = tracking_in((await call(client, "CA" + "1" * 32))[0].text or "")  # attested: A
    root = await call(client, "CA" + "2" * 32, StirVerstat=verstat)
    assert [c.tag for c in root] == ["Say", "Gather", "Enqueue"]
    new = tracking_in(root[0].text or "")
    assert new != mine and mine not in (root[0].text or "")
    gather = root.find("Gather")
    assert gather.get("input") == "dtmf" and gather.get("finishOnKey") == "#"
    assert "marque ahora los dígitos de su número de seguimiento" in (gather[0].text or "")
    token = await agent_token(gw)
    incident = await get_incident(client, token, new)
    # The caller ID is kept for the agent (to call back), marked as not proven.
    assert incident["contact"]["phone"] == CALLER and incident["contact"]["claimed"] == ["phone"]
    assert len((await get_incident(client, token, mine))["messages"]) == 1


async def test_attestation_a_joins_the_callers_open_incident(
    start_app: Any, voice_settings: Any
) -> None:
    client, _ = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    first = await call(client, "CA" + "1" * 32)
    again = await call(client, "CA" + "2" * 32)
    assert tracking_in(again[0].text or "") == tracking_in(first[0].text or "")
    assert [c.tag for c in again] == ["Say", "Enqueue"]  # nothing to ask


async def test_the_keyed_case_is_linked_when_it_is_the_callers_proven_number(
    start_app: Any, voice_settings: Any, agent_token: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    mine = tracking_in((await call(client, "CA" + "1" * 32))[0].text or "")
    root = await call(client, "CA" + "2" * 32, **SPOOFED)
    new = tracking_in(root[0].text or "")
    answer = await key_in(client, root, case_digits(mine))
    assert [c.tag for c in answer] == ["Say", "Enqueue"]
    assert tracking_in(answer[0].text or "") == mine  # now, and only now, read out
    assert f"tracking={mine}" in answer[1].get("action")  # the agent gets the existing case
    token = await agent_token(gw)
    assert "call_linked" in kinds(await get_incident(client, token, mine))
    assert "case_identified" in kinds(await get_incident(client, token, new))


async def test_a_keyed_case_of_another_number_reveals_nothing(
    start_app: Any, voice_settings: Any, agent_token: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    victim = tracking_in((await call(client, "CA" + "1" * 32))[0].text or "")
    # Someone else, from an unattested number, keys the victim's (guessable) tracking number.
    root = await call(client, "CA" + "2" * 32, caller="+50688880000", **SPOOFED)
    new = tracking_in(root[0].text or "")
    answer = await key_in(client, root, case_digits(victim), caller="+50688880000")
    said = answer[0].text or ""
    assert "No encontramos un caso abierto" in said
    assert tracking_in(said) == new and case_digits(victim) not in said.replace(" ", "")
    token = await agent_token(gw)
    assert "call_linked" not in kinds(await get_incident(client, token, victim))
    assert "case_not_verified" in kinds(await get_incident(client, token, new))
    # A wrong check digit is no case at all.
    root = await call(client, "CA" + "3" * 32, **SPOOFED)
    bad = case_digits(victim)[:-1] + str((int(victim[-1]) + 1) % 10)
    answer = await key_in(client, root, bad)
    assert "No encontramos un caso abierto" in (answer[0].text or "")


async def test_after_hours_the_keyed_case_gets_the_voicemail(
    start_app: Any, voice_settings: Any, clock: Any
) -> None:
    clock.set(CLOSED_TIME)
    client, _ = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    mine = tracking_in((await call(client, "CA" + "1" * 32))[0].text or "")
    root = await call(client, "CA" + "2" * 32, **SPOOFED)
    assert [c.tag for c in root][:2] == ["Say", "Gather"] and root.find("Record") is not None
    answer = await key_in(client, root, case_digits(mine))
    record = answer.find("Record")
    assert record is not None and f"tracking={mine}" in record.get("action")
