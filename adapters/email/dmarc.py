"""DMARC (RFC 7489) evaluation: pure functions over SPF/DKIM outcomes and DMARC records.

Policy discovery (§6.6.3): the record at `_dmarc.<From domain>`, else at the organizational
domain's (the Public Suffix List via `publicsuffixlist`); identifier alignment (§3.1), relaxed or
strict per `adkim`/`aspf`. The result is `pass` (an aligned SPF or DKIM pass), `fail` (a record
exists and nothing aligned passed), `none` (no record) or `temperror` (a check could not finish:
never taken for a fail). No I/O: the caller fetches the records.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from publicsuffixlist import PublicSuffixList


@dataclass(frozen=True)
class Record:
    """The tags of a DMARC record that decide alignment and the policy."""

    policy: str
    adkim: str = "r"
    aspf: str = "r"


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the list shipped in the package: no download


@lru_cache(maxsize=4096)
def org_domain(domain: str) -> str:
    """The organizational domain: one label below the public suffix (RFC 7489 §3.2)."""
    domain = domain.lower().rstrip(".")
    return _psl().privatesuffix(domain) or domain


def parse_record(texts: list[bytes]) -> Record | None:
    """The one DMARC record among a name's TXT strings (none, or several: no record, §6.6.3)."""
    found = []
    for raw in texts:
        text = raw.decode("ascii", errors="replace").strip()
        if text[:8].lower() != "v=dmarc1":
            continue
        tags: dict[str, str] = {}
        for part in text.split(";"):
            key, sep, value = part.partition("=")
            if sep:
                tags[key.strip().lower()] = value.strip().lower()
        found.append(tags)
    if len(found) != 1:
        return None
    tags = found[0]
    policy = tags.get("p", "")
    if policy not in ("none", "quarantine", "reject"):
        # §6.6.3: an invalid or missing p= with a valid rua is read as p=none; without, ignored.
        if not tags.get("rua"):
            return None
        policy = "none"
    return Record(
        policy=policy,
        adkim="s" if tags.get("adkim") == "s" else "r",
        aspf="s" if tags.get("aspf") == "s" else "r",
    )


def aligned(identifier: str, from_domain: str, mode: str) -> bool:
    """Identifier alignment (§3.1): the same domain (strict) or organizational domain (relaxed)."""
    a, b = identifier.lower().rstrip("."), from_domain.lower().rstrip(".")
    if not a or not b:
        return False
    return a == b if mode == "s" else org_domain(a) == org_domain(b)


def evaluate(
    record: Record | None,
    from_domain: str,
    *,
    spf: str,
    spf_domain: str,
    dkim: list[tuple[str, str]],
) -> str:
    """The DMARC result of one message.

    `spf` is the SPF result for `spf_domain` (MAIL FROM's domain, or HELO's for a null sender);
    `dkim` lists (result, d= domain) of each signature checked.
    """
    if record is None:
        return "none"
    if spf == "pass" and aligned(spf_domain, from_domain, record.aspf):
        return "pass"
    if any(r == "pass" and aligned(d, from_domain, record.adkim) for r, d in dkim):
        return "pass"
    if spf == "temperror" or any(r == "temperror" for r, _ in dkim):
        return "temperror"  # an aligned pass may be what could not be checked
    return "fail"
