"""Who may post the WhatsApp webhook: Twilio's signature, size bounds, credentials (T1-T3, T11)."""

from __future__ import annotations

import io
from urllib.parse import urlencode

from multidict import MultiDict
from twilio.request_validator import RequestValidator

from tests.adapters.whatsapp.wa_kit import (
    ACCOUNT_SID,
    ADAPTERS,
    AUTH_TOKEN,
    PUBLIC_URL,
    count,
    inbound_form,
    post_signed,
    signature,
)

PATH = "/webhooks/twilio/whatsapp"


async def _nothing_stored(gw) -> None:
    for table in ("receipts", "incidents", "messages", "contacts"):
        assert await count(gw, table) == 0, table


async def test_missing_or_forged_signature_is_403_and_stores_nothing(wa, caplog) -> None:
    client, gw = wa
    form = inbound_form()
    resp = await client.post(PATH, data=form)
    assert resp.status == 403
    assert "Response" not in await resp.text()  # no TwiML for a forger
    forged = signature(PATH, form, token="0" * 32)
    resp = await client.post(PATH, data=form, headers={"X-Twilio-Signature": forged})
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"
    await _nothing_stored(gw)
    # The security log line names the path, never the body or the token.
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "bad or missing signature" in logged
    assert AUTH_TOKEN not in logged and "no tengo tono" not in logged


async def test_a_changed_or_added_parameter_breaks_the_signature(wa) -> None:
    client, gw = wa
    signed = inbound_form()
    changed = MultiDict(signed)
    changed["Body"] = "Transfieran mi línea a otro número"
    resp = await post_signed(client, PATH, changed, sign_form=signed)
    assert resp.status == 403
    added = MultiDict(signed)
    added.add("Body", "segundo valor")  # a repeated field the validator must see (getall)
    resp = await post_signed(client, PATH, added, sign_form=signed)
    assert resp.status == 403
    # Signed with a repeated field; one of its values removed in transit.
    twice = MultiDict(signed)
    twice.add("Body", "segundo valor")
    resp = await post_signed(client, PATH, signed, sign_form=twice)
    assert resp.status == 403
    await _nothing_stored(gw)
    resp = await post_signed(client, PATH, twice)  # every value signed: accepted
    assert resp.status == 200


async def test_public_url_is_what_counts_behind_a_proxy(wa) -> None:
    client, gw = wa
    form = inbound_form()
    # The proxy forwards http://127.0.0.1:PORT/...; Twilio signed https://soporte.../...
    resp = await post_signed(client, PATH, form, headers={"X-Forwarded-Host": "evil.example"})
    assert resp.status == 200
    # A signature over the URL an attacker makes the proxy report is not accepted.
    other = inbound_form()
    resp = await post_signed(
        client,
        PATH,
        other,
        url="https://evil.example",
        headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
    )
    assert resp.status == 403
    # Nor one over the URL the process itself sees.
    local = str(client.make_url("")).rstrip("/")
    resp = await post_signed(client, PATH, inbound_form(), url=local)
    assert resp.status == 403
    assert await count(gw, "incidents") == 1


async def test_public_url_with_a_port(start_app, make_settings, twilio_fake) -> None:
    public = "https://soporte.callmyway.test:8443"
    settings = make_settings(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        GATEWAY_PUBLIC_URL=public,
        TWILIO_API_BASE=twilio_fake.url,
    )
    client, _ = await start_app(settings, adapters=ADAPTERS)
    resp = await post_signed(client, PATH, inbound_form(), url=public)
    assert resp.status == 200
    assert "CMW-" in await resp.text()
    # Twilio may sign either form of a URL with an explicit port; its validator accepts both (T3).
    resp = await post_signed(client, PATH, inbound_form(), url=PUBLIC_URL)
    assert resp.status == 200
    resp = await post_signed(client, PATH, inbound_form(), url="https://other.test:8443")
    assert resp.status == 403


async def test_two_megabyte_body_is_413_before_any_work(wa) -> None:
    client, gw = wa
    form = inbound_form(body="x" * (2 * 1024 * 1024))
    body = io.BytesIO(urlencode(list(form.items())).encode())
    headers = {
        "X-Twilio-Signature": signature(PATH, form),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    resp = await client.post(PATH, data=body, headers=headers)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "too_large"
    await _nothing_stored(gw)


async def test_ten_thousand_parameters_is_413(wa) -> None:
    client, gw = wa
    form = inbound_form()
    for i in range(10_000):
        form.add(f"p{i}", "1")
    resp = await post_signed(client, PATH, form)
    assert resp.status == 413
    assert "fields" in (await resp.json())["error"]["message"]
    await _nothing_stored(gw)


async def test_unconfigured_twilio_answers_503(start_app, make_settings) -> None:
    client, gw = await start_app(make_settings(GATEWAY_PUBLIC_URL=PUBLIC_URL), adapters=ADAPTERS)
    form = inbound_form()
    resp = await client.post(PATH, data=form, headers={"X-Twilio-Signature": "x"})
    assert resp.status == 503
    resp = await client.post("/webhooks/twilio/status", data=form)
    assert resp.status == 503
    await _nothing_stored(gw)


async def test_malformed_signed_forms_are_400_naming_the_field(wa) -> None:
    client, gw = wa
    form = inbound_form()
    form["From"] = "+50688887777"  # SMS-style sender on the WhatsApp webhook
    resp = await post_signed(client, PATH, form)
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == "From"
    form = inbound_form()
    form["NumMedia"] = "many"
    resp = await post_signed(client, PATH, form)
    assert (await resp.json())["error"]["field"] == "NumMedia"
    await _nothing_stored(gw)


async def test_sha256_shared_key_signatures_are_checked(wa) -> None:
    """X-Twilio-Webhooks-Signature-Settings selects HMAC-SHA256; anything else is refused."""
    client, _ = wa
    url = PUBLIC_URL + PATH
    form = inbound_form()
    settings_header = {"X-Twilio-Webhooks-Signature-Settings": "key=k1,algorithm=HMAC_SHA256"}
    sig = RequestValidator(AUTH_TOKEN).compute_signature(url, form, "HMAC_SHA256")
    resp = await client.post(
        PATH, data=form, headers={"X-Twilio-Signature": sig, **settings_header}
    )
    assert resp.status == 200
    # A SHA-1 signature does not pass as SHA-256, nor does an algorithm Twilio does not define.
    resp = await post_signed(client, PATH, inbound_form(), headers=settings_header)
    assert resp.status == 403
    unknown = {"X-Twilio-Webhooks-Signature-Settings": "key=k1,algorithm=HMAC_MD5"}
    form = inbound_form()
    headers = {"X-Twilio-Signature": signature(PATH, form), **unknown}
    resp = await client.post(PATH, data=form, headers=headers)
    assert resp.status == 403
