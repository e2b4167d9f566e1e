"""`twilio_signature` computes exactly what Twilio's RequestValidator computes (T1-T3).

The webhook checks signatures with its own short implementation of Twilio's algorithm (no
MultiDict rebuild per request); these tests hold it equal to the library on the forms Twilio
sends and on the awkward ones (repeated names, repeated pairs, non-ASCII, empty values).
"""

from __future__ import annotations

import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from adapters.twilio_common import twilio_signature
from tests.whatsapp.wa_kit import AUTH_TOKEN, PUBLIC_URL, inbound_form, post_signed, signature

PATH = "/webhooks/twilio/whatsapp"
URL = PUBLIC_URL + PATH

FORMS: list[list[tuple[str, str]]] = [
    list(inbound_form().items()),
    list(inbound_form(media=[("https://api.twilio.test/m/ME1", "image/jpeg")] * 3).items()),
    [],
    [("Body", "")],
    [("Body", "segundo"), ("Body", "primero")],  # a repeated name: its values sorted
    [("Body", "igual"), ("Body", "igual"), ("From", "whatsapp:+50688887777")],  # repeated pair
    [("Media", "a"), ("MediaUrl0", "b"), ("Medi", "c"), ("media", "d")],  # prefixes, case
    [("Body", "¿Tildes? ñandú — 你好 🙂 & <xml> =%+"), ("ProfileName", "José Ñúñez")],
    [("b", "2"), ("a", "3"), ("b", "1"), ("a", "1"), ("a", "3")],
    [("To", "whatsapp:+50640004000"), ("From", "whatsapp:+13055550123"), ("Body", "x" * 5000)],
]


@pytest.mark.parametrize("pairs", FORMS)
@pytest.mark.parametrize("algorithm", ["HMAC_SHA1", "HMAC_SHA256", "hmac_sha256"])
@pytest.mark.parametrize("url", [URL, "https://soporte.callmyway.test:8443/x?a=1&b=ñ"])
def test_equal_to_twilio_request_validator(
    pairs: list[tuple[str, str]], algorithm: str, url: str
) -> None:
    expected = RequestValidator(AUTH_TOKEN).compute_signature(url, MultiDict(pairs), algorithm)
    assert twilio_signature(AUTH_TOKEN, url, pairs, algorithm) == expected
    # What `validate` (the port-variant fallback) accepts for the same form and URL.
    assert RequestValidator(AUTH_TOKEN).validate(url, MultiDict(pairs), expected, algorithm)


def test_pair_order_does_not_matter_but_every_value_does() -> None:
    pairs = [("Body", "b"), ("Body", "a"), ("From", "f")]
    signed = twilio_signature(AUTH_TOKEN, URL, pairs, "HMAC_SHA1")
    assert twilio_signature(AUTH_TOKEN, URL, pairs[::-1], "HMAC_SHA1") == signed
    assert twilio_signature(AUTH_TOKEN, URL, pairs[:2], "HMAC_SHA1") != signed
    assert twilio_signature(AUTH_TOKEN, URL, [*pairs, ("Body", "c")], "HMAC_SHA1") != signed
    assert twilio_signature("0" * 32, URL, pairs, "HMAC_SHA1") != signed


def test_unknown_algorithm_is_an_error() -> None:
    with pytest.raises(ValueError):
        twilio_signature(AUTH_TOKEN, URL, [], "HMAC_MD5")


async def test_sha256_shared_key_signatures_are_checked(wa) -> None:
    client, _ = wa
    form = inbound_form()
    settings_header = {"X-Twilio-Webhooks-Signature-Settings": "key=k1,algorithm=HMAC_SHA256"}
    sig = RequestValidator(AUTH_TOKEN).compute_signature(URL, form, "HMAC_SHA256")
    resp = await client.post(
        PATH, data=form, headers={"X-Twilio-Signature": sig, **settings_header}
    )
    assert resp.status == 200
    # A SHA-1 signature does not pass as SHA-256, nor does an algorithm Twilio does not define.
    resp = await post_signed(client, PATH, inbound_form(), headers=settings_header)
    assert resp.status == 403
    unknown = {"X-Twilio-Webhooks-Signature-Settings": "key=k1,algorithm=HMAC_MD5"}
    form = inbound_form()
    resp = await client.post(
        PATH, data=form, headers={"X-Twilio-Signature": signature(PATH, form), **unknown}
    )
    assert resp.status == 403
