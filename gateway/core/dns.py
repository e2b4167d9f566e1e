"""DNS look-ups for sender authentication: the `Resolver` role and its dnspython implementation.

Only what SPF, DKIM and DMARC ask for (TXT, A, AAAA, MX, PTR), on the event loop (dnspython's
asyncio resolver: no thread), each query bounded by a timeout. A name that does not exist or has
no such record is an empty answer; a timeout or a server failure raises `DnsTempError`, which
the caller turns into a temporary error, never into a verdict. Tests pass a fake `Resolver`.
"""

from __future__ import annotations

from typing import Any, Protocol

# Answer shapes: TXT -> the record's strings joined, as bytes; A/AAAA -> address text;
# MX -> (preference, exchange name); PTR -> target name (names without the final dot).
RDTYPES = ("TXT", "A", "AAAA", "MX", "PTR")


class DnsTempError(Exception):
    """The answer could not be had now (timeout, SERVFAIL, no reachable server)."""


class Resolver(Protocol):
    """What sender authentication needs of DNS."""

    async def query(self, name: str, rdtype: str) -> list[Any]:
        """The records of `rdtype` at `name` ([] when there are none); DnsTempError if unknown."""
        ...


class DnsPythonResolver:
    """The system's resolvers (resolv.conf) through dnspython's asyncio resolver."""

    def __init__(self, timeout: float):
        import dns.asyncresolver  # imported here: only a gateway that checks mail needs it

        self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = timeout
        self._resolver.timeout = timeout

    async def query(self, name: str, rdtype: str) -> list[Any]:
        """One query, at most `timeout` seconds."""
        import dns.exception
        import dns.name
        import dns.resolver

        if rdtype not in RDTYPES:
            raise ValueError(f"unsupported record type {rdtype}")
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DnsTempError(f"{rdtype} {name}: {type(exc).__name__}") from exc
        except dns.exception.DNSException as exc:  # a malformed name or answer: no records
            if isinstance(exc, dns.name.EmptyLabel | dns.name.LabelTooLong):
                return []
            raise DnsTempError(f"{rdtype} {name}: {type(exc).__name__}") from exc
        out: list[Any] = []
        for rdata in answer:
            if rdtype == "TXT":
                out.append(b"".join(rdata.strings))
            elif rdtype in ("A", "AAAA"):
                out.append(rdata.address)
            elif rdtype == "MX":
                out.append((rdata.preference, rdata.exchange.to_text(omit_final_dot=True)))
            else:
                out.append(rdata.target.to_text(omit_final_dot=True))
        return out
