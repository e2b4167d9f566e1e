"""WhatsApp media: fetched after the commit, credentials only toward Twilio, SSRF, limits (T10)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from adapters.whatsapp.media import PrivateAddress, PublicResolver, refusal, sends_credentials
from tests.adapters.whatsapp.wa_kit import (
    ACCOUNT_SID,
    ADAPTERS,
    AUTH_TOKEN,
    JPEG,
    PUBLIC_URL,
    Media,
    count,
    inbound_form,
    post_signed,
)

PATH = "/webhooks/twilio/whatsapp"
BASIC = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()


async def settle(gw: Any) -> None:
    """Wait for the background fetches started by the webhook."""
    await asyncio.gather(*list(gw.extras["whatsapp_media"].tasks))


async def attachments(gw: Any) -> list[dict[str, Any]]:
    return await gw.store.read(
        lambda tx: tx.all("SELECT filename, content_type, size, state, data FROM attachments")
    )


async def events(gw: Any, kind: str) -> list[dict[str, Any]]:
    return await gw.store.read(
        lambda tx: tx.all("SELECT detail FROM events WHERE kind = ?", (kind,))
    )


async def wait_for(check: Any) -> None:
    """Poll a condition the background workers make true (bounded)."""
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never became true")


async def test_media_is_fetched_after_the_answer_and_stored(wa, twilio_fake, agent_token) -> None:
    client, gw = wa
    twilio_fake.media["ME11aa"] = Media(JPEG)
    form = inbound_form(body="", media=[(twilio_fake.media_url("ME11aa"), "image/jpeg")])
    resp = await post_signed(client, PATH, form)
    assert resp.status == 200 and "CMW-" in await resp.text()
    await settle(gw)
    # First request to the API host with the account's credentials; the CDN hop without them.
    assert [auth for _, auth in twilio_fake.media_requests] == [BASIC, None]
    assert twilio_fake.media_requests[1][0] == "/cdn/ME11aa"
    token = await agent_token(gw)
    auth = {"Authorization": f"Bearer {token}"}
    tracking = (await gw.store.read(lambda tx: tx.one("SELECT tracking FROM incidents")))[
        "tracking"
    ]
    body = await (await client.get(f"/api/v1/incidents/{tracking}", headers=auth)).json()
    message = body["messages"][0]
    assert message["body"] == "[1 archivo(s) adjunto(s)]"
    [att] = message["attachments"]
    assert att["filename"] == "ME11aa.jpg" and att["content_type"] == "image/jpeg"
    assert att["size"] == len(JPEG) and att["state"] == "stored"
    download = await client.get(att["url"], headers=auth)
    assert download.status == 200 and await download.read() == JPEG
    # The persisted retry job finds nothing left to do.
    assert await count(gw, "jobs") == 1


@pytest.mark.parametrize(
    ("media", "declared", "reason"),
    [
        (Media(JPEG * 3), "image/jpeg", "bytes"),
        (Media(b"MZ\x90\x00", content_type="application/x-msdownload"), "image/jpeg", "type"),
    ],
)
async def test_too_big_or_wrong_type_is_refused_and_shown(
    start_app, make_settings, twilio_fake, media, declared, reason
) -> None:
    settings = make_settings(
        {"whatsapp": {"max_media_bytes": len(JPEG) * 2}},
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        GATEWAY_PUBLIC_URL=PUBLIC_URL,
        TWILIO_API_BASE=twilio_fake.url,
    )
    client, gw = await start_app(settings, adapters=ADAPTERS)
    twilio_fake.media["ME22bb"] = media
    form = inbound_form(media=[(twilio_fake.media_url("ME22bb"), declared)])
    resp = await post_signed(client, PATH, form)
    assert resp.status == 200 and "CMW-" in await resp.text()  # intake not blocked
    await settle(gw)
    [att] = await attachments(gw)
    assert att["state"] == "failed" and att["data"] is None
    [event] = await events(gw, "attachment_failed")
    assert reason in event["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://169.254.169.254/latest/meta-data/",
        "https://evil.example.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        "https://api.twilio.com.evil.example/x",
        "file:///etc/passwd",
    ],
)
async def test_media_outside_twilio_is_never_fetched(wa, twilio_fake, url) -> None:
    client, gw = wa
    resp = await post_signed(client, PATH, inbound_form(media=[(url, "image/jpeg")]))
    assert resp.status == 200 and "CMW-" in await resp.text()
    await settle(gw)
    [att] = await attachments(gw)
    assert att["state"] == "failed"
    assert twilio_fake.media_requests == []


async def test_a_redirect_to_an_internal_address_is_not_followed(wa, twilio_fake) -> None:
    client, gw = wa
    twilio_fake.media["ME33cc"] = Media(JPEG, redirect_to="http://169.254.169.254/latest/")
    form = inbound_form(media=[(twilio_fake.media_url("ME33cc"), "image/jpeg")])
    await post_signed(client, PATH, form)
    await settle(gw)
    [att] = await attachments(gw)
    assert att["state"] == "failed"
    [event] = await events(gw, "attachment_failed")
    assert "only https" in event["detail"]


async def test_a_failed_fetch_stays_pending_and_the_job_retries(wa, twilio_fake, clock) -> None:
    client, gw = wa
    twilio_fake.media["ME44dd"] = Media(JPEG, status=503)
    form = inbound_form(media=[(twilio_fake.media_url("ME44dd"), "image/jpeg")])
    resp = await post_signed(client, PATH, form)
    assert resp.status == 200 and "CMW-" in await resp.text()
    await settle(gw)
    [att] = await attachments(gw)
    assert att["state"] == "pending"
    assert await events(gw, "attachment_failed") == []
    twilio_fake.media["ME44dd"] = Media(JPEG)  # Twilio's CDN is back
    clock.advance(minutes=2)
    gw.scheduler.wake()

    async def stored() -> bool:
        return (await attachments(gw))[0]["state"] == "stored"

    await wait_for(stored)
    assert (await attachments(gw))[0]["data"] == JPEG


async def test_a_retried_webhook_does_not_fetch_twice(wa, twilio_fake) -> None:
    client, gw = wa
    twilio_fake.media["ME55ee"] = Media(JPEG)
    form = inbound_form(media=[(twilio_fake.media_url("ME55ee"), "image/jpeg")])
    await post_signed(client, PATH, form)
    await settle(gw)
    await post_signed(client, PATH, form)
    await settle(gw)
    assert len(twilio_fake.media_requests) == 2  # one API request + one CDN hop
    assert await count(gw, "attachments") == 1 and await count(gw, "jobs") == 1


@pytest.mark.parametrize(
    ("url", "allowed", "credentials"),
    [
        ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1", True, True),
        ("https://media.twiliocdn.com/AC1/abc", True, False),
        ("https://mms.twiliocdn.com/AC1/abc?Expires=1", True, False),
        ("http://api.twilio.com/2010-04-01/x", False, False),
        ("https://api.twilio.com@evil.example/x", False, False),
        ("https://10.0.0.5/x", False, False),
        ("http://127.0.0.1:9/x", False, False),
    ],
)
def test_host_allow_list_and_credentials(url: str, allowed: bool, credentials: bool) -> None:
    base = "https://api.twilio.com"
    assert (refusal(url, base) is None) is allowed
    assert sends_credentials(url, base) is credentials


async def test_the_resolver_refuses_non_public_addresses() -> None:
    resolver = PublicResolver(frozenset())
    with pytest.raises(PrivateAddress):
        await resolver.resolve("localhost", 443)
    await resolver.close()
    trusting = PublicResolver(frozenset({"localhost"}))
    assert await trusting.resolve("localhost", 443)
    await trusting.close()
