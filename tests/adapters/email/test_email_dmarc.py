"""DMARC evaluation (RFC 7489) as a plain table: records, alignment, results."""

from __future__ import annotations

import pytest

from adapters.email.dmarc import Record, aligned, evaluate, org_domain, parse_record


@pytest.mark.parametrize(
    "texts, expected",
    [
        ([b"v=DMARC1; p=reject"], Record("reject")),
        ([b"v=DMARC1;p=quarantine;adkim=s;aspf=s"], Record("quarantine", "s", "s")),
        ([b"v=spf1 -all", b"V=DMARC1; P=None"], Record("none")),
        ([b"v=DMARC1; p=bogus; rua=mailto:d@x.example"], Record("none")),  # §6.6.3
        ([b"v=DMARC1; p=bogus"], None),
        ([b"v=DMARC1; p=reject", b"v=DMARC1; p=none"], None),  # two records: none at all
        ([], None),
    ],
)
def test_parse_record(texts: list[bytes], expected: Record | None) -> None:
    assert parse_record(texts) == expected


@pytest.mark.parametrize(
    "identifier, from_domain, mode, expected",
    [
        ("bank.example", "bank.example", "s", True),
        ("mail.bank.example", "bank.example", "s", False),
        ("mail.bank.example", "bank.example", "r", True),
        ("mail.bank.co.uk", "bank.co.uk", "r", True),
        ("evil.co.uk", "bank.co.uk", "r", False),  # a public suffix is no shared organization
        ("", "bank.example", "r", False),
    ],
)
def test_alignment(identifier: str, from_domain: str, mode: str, expected: bool) -> None:
    assert aligned(identifier, from_domain, mode) is expected


def test_org_domain_uses_the_public_suffix_list() -> None:
    assert org_domain("a.b.callmyway.com") == "callmyway.com"
    assert org_domain("soporte.empresa.com.mx") == "empresa.com.mx"


STRICT = Record("reject", adkim="s", aspf="s")


@pytest.mark.parametrize(
    "record, spf, spf_domain, dkim, expected",
    [
        (None, "fail", "evil.example", [], "none"),
        (Record("reject"), "pass", "bank.example", [], "pass"),
        (Record("reject"), "pass", "evil.example", [], "fail"),
        (Record("none"), "pass", "evil.example", [], "fail"),  # p=none still fails DMARC
        (Record("reject"), "fail", "bank.example", [("pass", "mail.bank.example")], "pass"),
        (STRICT, "fail", "bank.example", [("pass", "mail.bank.example")], "fail"),
        (Record("reject"), "fail", "x.example", [("fail", "bank.example")], "fail"),
        (Record("reject"), "temperror", "bank.example", [], "temperror"),
        (Record("reject"), "fail", "x.example", [("temperror", "bank.example")], "temperror"),
    ],
)
def test_evaluate(
    record: Record | None, spf: str, spf_domain: str, dkim: list, expected: str
) -> None:
    assert evaluate(record, "bank.example", spf=spf, spf_domain=spf_domain, dkim=dkim) == expected
