"""Click2Call's toll-fraud guard and input errors: refused before any incident or call."""

from __future__ import annotations

from typing import Any

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType

from tests.adapters.twilio.voice_kit import VOICE_ADAPTERS

WEBSITE = {"Origin": "https://www.callmyway.com"}  # the seed's site: [click2call] allowed_origins


def example(region: str, kind: int) -> str:
    """libphonenumber's own example number of a kind (so the test tracks its metadata)."""
    number = phonenumbers.example_number_for_type(region, kind)
    assert number is not None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


async def nothing_happened(gw: Any, fake_twilio: Any) -> None:
    row = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents"))
    assert row["n"] == 0 and fake_twilio.requests == []


@pytest.mark.parametrize(
    ("phone", "says"),
    [
        (example("US", PhoneNumberType.PREMIUM_RATE), "premium-rate"),
        (example("MX", PhoneNumberType.TOLL_FREE), "toll-free"),
        (example("CR", PhoneNumberType.PREMIUM_RATE), "premium-rate"),
        ("+34612345678", "we only call numbers in"),  # Spain: no line there
        ("+882360001234", "we only call numbers in"),  # international networks (+882)
        ("+50690012345", "unassigned or invalid"),
        ("+50640004000", "CallMyWay support number"),  # our own line: a call loop
        ("hello", "not a phone number"),
    ],
)
async def test_refused_numbers(
    start_app: Any, voice_settings: Any, fake_twilio: Any, phone: str, says: str
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    resp = await client.post(
        "/api/v1/click2call", json={"name": "Eve", "phone": phone}, headers=WEBSITE
    )
    assert resp.status == 400, phone
    error = (await resp.json())["error"]
    assert error["field"] == "phone" and says in error["message"]
    await nothing_happened(gw, fake_twilio)


async def test_national_number_with_its_country_and_voip_numbers_are_called(
    start_app: Any, voice_settings: Any, fake_twilio: Any
) -> None:
    client, _ = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    resp = await client.post(
        "/api/v1/click2call",
        json={"name": "Ana", "phone": "8888 7777", "country": "cr"},
        headers=WEBSITE,
    )
    assert resp.status == 202
    # Costa Rica's 4000 range is typed VOIP: CallMyWay's own customers' numbers (a VoIP carrier).
    resp = await client.post(
        "/api/v1/click2call", json={"name": "Luis", "phone": "+50640001234"}, headers=WEBSITE
    )
    assert resp.status == 202
    assert [r["To"] for r in fake_twilio.requests] == ["+50688887777", "+50640001234"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phone": "+50688887777"}, "name"),
        ({"name": "   ", "phone": "+50688887777"}, "name"),
        ({"name": "Ana"}, "phone"),
        ({"name": "Ana", "phone": 50688887777}, "phone"),
        ({"name": "Ana", "phone": "+50688887777", "country": "XX"}, "country"),
        ({"name": "Ana", "phone": "+50688887777", "email": "ana@"}, "email"),
        ({"name": "Ana", "phone": "+50688887777", "description": "x" * 2001}, "description"),
        ({"name": ["Ana"], "phone": "+50688887777"}, "name"),
    ],
)
async def test_bad_input_names_the_field(
    start_app: Any, voice_settings: Any, fake_twilio: Any, body: dict[str, Any], field: str
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    resp = await client.post("/api/v1/click2call", json=body, headers=WEBSITE)
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == field
    await nothing_happened(gw, fake_twilio)


async def test_not_json_too_large_and_bad_key(
    start_app: Any, voice_settings: Any, fake_twilio: Any
) -> None:
    settings = voice_settings({"gateway": {"max_body_bytes": 4096}})
    client, gw = await start_app(settings, adapters=VOICE_ADAPTERS)
    resp = await client.post(
        "/api/v1/click2call",
        data=b"name=Ana",
        headers={"Content-Type": "application/json", **WEBSITE},
    )
    assert resp.status == 400 and (await resp.json())["error"]["field"] == "body"
    resp = await client.post(
        "/api/v1/click2call",
        json={"name": "Ana", "phone": "+50688887777", "x": "y" * 8000},
        headers=WEBSITE,
    )
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "too_large"
    resp = await client.post(
        "/api/v1/click2call",
        json={"name": "Ana", "phone": "+50688887777"},
        headers={"Idempotency-Key": "a b", **WEBSITE},
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == "Idempotency-Key"
    await nothing_happened(gw, fake_twilio)


async def test_origin_allow_list(start_app: Any, voice_settings: Any, fake_twilio: Any) -> None:
    site = "https://www.callmyway.com"
    settings = voice_settings({"click2call": {"allowed_origins": [site]}})
    client, gw = await start_app(settings, adapters=VOICE_ADAPTERS)
    body = {"name": "Ana", "phone": "+50688887777"}
    resp = await client.post(
        "/api/v1/click2call", json=body, headers={"Origin": "https://evil.example"}
    )
    assert resp.status == 403 and (await resp.json())["error"]["field"] == "Origin"
    assert (await client.post("/api/v1/click2call", json=body)).status == 403
    await nothing_happened(gw, fake_twilio)
    pre = await client.options(
        "/api/v1/click2call",
        headers={
            "Origin": site,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        },
    )
    assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == site
    assert "Idempotency-Key" in pre.headers["Access-Control-Allow-Headers"]
    resp = await client.post("/api/v1/click2call", json=body, headers={"Origin": site})
    assert resp.status == 202 and resp.headers["Access-Control-Allow-Origin"] == site


async def test_unconfigured_twilio_answers_503(start_app: Any, make_settings: Any) -> None:
    client, _ = await start_app(make_settings(), adapters=VOICE_ADAPTERS)
    body = {"name": "Ana", "phone": "+50688887777"}
    resp = await client.post("/api/v1/click2call", json=body, headers=WEBSITE)
    assert resp.status == 503


async def test_the_default_allows_the_seeds_website_only_and_empty_never_means_any(
    start_app: Any, voice_settings: Any, fake_twilio: Any
) -> None:
    # Issue #15: shipped, [click2call] allowed_origins is the seed's website; before it was
    # empty, which allowed every website to make its visitors request calls.
    body = {"name": "Ana", "phone": "+50688887777"}
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    evil = {"Origin": "https://evil.example"}
    assert (await client.post("/api/v1/click2call", json=body, headers=evil)).status == 403
    resp = await client.post("/api/v1/click2call", json=body, headers=WEBSITE)
    assert resp.status == 202 and resp.headers["Access-Control-Allow-Origin"] == WEBSITE["Origin"]
    # An empty list allows the gateway's own pages only, never "*".
    client, gw = await start_app(
        voice_settings({"click2call": {"allowed_origins": []}}), adapters=VOICE_ADAPTERS
    )
    resp = await client.post("/api/v1/click2call", json=body, headers=WEBSITE)
    assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    own = {"Origin": gw.settings.public_url}
    assert (await client.post("/api/v1/click2call", json=body, headers=own)).status == 202
