"""The WhatsApp answer's TwiML is built from a skeleton the library made once (issue 19): for any
text a customer can be sent, it must be exactly what the library itself would build."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.twiml.messaging_response import MessagingResponse

from adapters.whatsapp.webhook import twiml_text

# Characters XML 1.0 can carry (the library does not filter the others either).
XML_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff", min_codepoint=9
    ),
    max_size=300,
)


def library_twiml(text: str) -> str:
    response = MessagingResponse()
    response.message(text)
    return str(response)


def test_an_acknowledgement_with_markup_characters_is_escaped_like_the_library() -> None:
    text = 'Hola Ana & "Pepe" <ana@x.cr>, su número de seguimiento es CR-20261207-000001 > ok'
    body = twiml_text(text).text
    assert body == library_twiml(text)
    assert 'Ana &amp; "Pepe" &lt;ana@x.cr&gt;' in body
    assert body.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Message>')


@settings(max_examples=300, deadline=None)
@given(XML_TEXT)
def test_every_text_gives_the_library_s_own_twiml(text: str) -> None:
    response = twiml_text(text)
    assert response.text == library_twiml(text)
    assert response.content_type == "application/xml"
