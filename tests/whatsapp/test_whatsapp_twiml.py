"""The webhook's TwiML answer is byte for byte what twilio's MessagingResponse produces."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from aiohttp import web
from twilio.twiml.messaging_response import MessagingResponse

from adapters.whatsapp_twilio import twiml, twiml_body

TEXTS = [
    "Hola Ana Pérez, gracias por contactar a Soporte CallMyWay. Registramos su caso con el "
    "número de seguimiento CMW-0000042-7.\nUn agente le atenderá en breve.",
    "plain ascii",
    "",
    " ",
    "a & b < c > d; &amp; already escaped; ]]> <![CDATA[x]]>",
    "quotes \" and ' stay; tabs\tand\r\nnewlines stay",
    "{braces} {0} {name} %s %(x)s",
    "emoji 🙂, CJK 你好, RTL مرحبا, combining e\u0301",
    "a lone surrogate \ud800 and \udfff",
    "control \x00\x01\x1f characters",
    "x" * 5000,
]


def library(text: str | None) -> bytes:
    response = MessagingResponse()
    if text is not None:
        response.message(text)
    return str(response).encode("utf-8", "xmlcharrefreplace")


@pytest.mark.parametrize("text", [None, *TEXTS])
def test_twiml_body_equals_messaging_response(text: str | None) -> None:
    assert twiml_body(text) == library(text)


@dataclass
class _Receipt:
    created: bool
    ack_text: str


def _reference(receipt: _Receipt) -> web.Response:
    """The answer as the adapter built it before: MessagingResponse, str, web.Response(text=)."""
    response = MessagingResponse()
    if receipt.created:
        response.message(receipt.ack_text)
    return web.Response(text=str(response), content_type="application/xml")


@pytest.mark.parametrize("created", [True, False])
def test_twiml_response_has_the_same_headers_and_body(created: bool) -> None:
    receipt = _Receipt(created=created, ack_text=TEXTS[0] + " & <más>")
    ours, reference = twiml(receipt), _reference(receipt)  # type: ignore[arg-type]
    assert ours.body == reference.body
    assert ours.content_type == reference.content_type == "application/xml"
    assert ours.charset == reference.charset == "utf-8"
    assert ours.headers["Content-Type"] == reference.headers["Content-Type"]
    assert ours.status == reference.status == 200
