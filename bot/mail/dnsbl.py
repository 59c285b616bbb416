"""DNS blocklist checks: is a mail server's public IP listed after a spam run?

For IPv4 a.b.c.d and zone Z the question is the A record of d.c.b.a.Z: an answer in 127.0.0.0/8
means listed (its TXT record says why), NXDOMAIN means not listed. A zone that times out or
fails is reported as unknown, never as "not listed" and never as an error that stops the caller.
Answers in 127.255.255.0/24 are the blocklists' own error codes (Spamhaus: "query via a public
resolver", "too many queries"), not listings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dns.exception
import dns.nameserver
import dns.resolver

from bot.config import Config, ServerConfig
from bot.i18n import _

LISTED = ipaddress.ip_network("127.0.0.0/8")
ERROR_CODES = ipaddress.ip_network("127.255.255.0/24")
MAX_REASON = 300  # a TXT reason is shown in Slack and in the report: keep it short
# Where to ask for removal, by the zone's registered domain (checked as a suffix of the zone).
REMOVAL_PAGES = {
    "spamhaus.org": "https://check.spamhaus.org/",
    "abuseat.org": "https://check.spamhaus.org/",  # the CBL is part of Spamhaus's XBL now
    "spamcop.net": "https://www.spamcop.net/bl.shtml",
    "barracudacentral.org": "https://www.barracudacentral.org/rbl/removal-request",
    "uceprotect.net": "https://www.uceprotect.net/en/rblcheck.php",
    "surriel.com": "https://psbl.org/",
    "mailspike.net": "https://mailspike.org/",
}


@dataclass(frozen=True)
class Listing:
    """One zone's verdict on an IP: `listed` is True, False, or None when the zone could not be asked."""

    zone: str
    listed: bool | None
    answer: str = ""  # the A records, e.g. "127.0.0.2"
    reason: str = ""  # the TXT record, when the zone gives one
    removal_url: str = ""
    error: str = ""  # why the verdict is unknown

    @property
    def unknown(self) -> bool:
        return self.listed is None


def validate_ipv4(value: str) -> str:
    """Return `value` if it is a public-looking IPv4 address in dotted form, else raise ValueError."""
    try:
        address = ipaddress.IPv4Address(value.strip())
    except ipaddress.AddressValueError:
        raise ValueError(_("public_ip {value} is not an IPv4 address").format(value=repr(value))) from None
    return str(address)


def removal_url(zone: str) -> str:
    """Return the removal page of a well-known zone, or "" when we know none."""
    zone = zone.lower().rstrip(".")
    for domain, url in REMOVAL_PAGES.items():
        if zone == domain or zone.endswith("." + domain):
            return url
    return ""


def parse_server(value: str) -> dns.nameserver.Do53Nameserver:
    """Return the nameserver for "host" or "host:port" ("[v6]:port" for IPv6); host must be an IP address."""
    host, port = value.strip(), 53
    if host.startswith("["):
        host, __, rest = host[1:].partition("]")
        if rest:
            port = int(rest.removeprefix(":"))
    elif host.count(":") == 1:
        host, __, number = host.partition(":")
        port = int(number)
    ipaddress.ip_address(host)  # dnspython wants an address; a name would need a resolver of its own
    if not 0 < port < 65536:
        raise ValueError(_("dns_servers: bad port in {value}").format(value=repr(value)))
    return dns.nameserver.Do53Nameserver(host, port)


def make_resolver(servers: Sequence[str], timeout: float) -> dns.resolver.Resolver:
    """Return a resolver asking `servers` (the system's resolvers when empty) with `timeout` per zone."""
    resolver = dns.resolver.Resolver(configure=not servers)
    if servers:
        resolver.nameservers = [parse_server(s) for s in servers]
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.cache = None  # a listing removed a minute ago must show as removed
    return resolver


def check_listings(
    ip: str, zones: Sequence[str], *, servers: Sequence[str] = (), timeout: float = 2.0
) -> list[Listing]:
    """Return one Listing per zone for IPv4 `ip`, asking all zones at once; raise ValueError for a bad ip."""
    ip = validate_ipv4(ip)
    if not zones:
        return []
    resolver = make_resolver(servers, timeout)
    reversed_ip = ".".join(reversed(ip.split(".")))
    with ThreadPoolExecutor(max_workers=min(8, len(zones)), thread_name_prefix="mailfix-dnsbl") as pool:
        return list(pool.map(lambda zone: _check(resolver, reversed_ip, zone.strip().rstrip("."), timeout), zones))


def _check(resolver: dns.resolver.Resolver, reversed_ip: str, zone: str, timeout: float) -> Listing:
    name, url = f"{reversed_ip}.{zone}.", removal_url(zone)
    try:
        answer = resolver.resolve(name, "A", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return Listing(zone, listed=False)
    except dns.resolver.LifetimeTimeout:
        return Listing(zone, listed=None, error=_("no answer within {seconds}s").format(seconds=f"{timeout:g}"))
    except dns.resolver.NoNameservers:
        return Listing(zone, listed=None, error=_("the resolvers refused or failed the query (SERVFAIL/REFUSED)"))
    except dns.exception.DNSException as exc:
        return Listing(zone, listed=None, error=f"{type(exc).__name__}: {str(exc)[:200]}")
    addresses = sorted({rdata.to_text() for rdata in answer})
    shown = ", ".join(addresses)
    listed = [a for a in addresses if _is_listing(a)]
    if not listed:
        error = _("the zone answered {answer}, an error code, not a listing").format(answer=shown)
        return Listing(zone, listed=None, answer=shown, error=error)
    return Listing(zone, listed=True, answer=shown, reason=_reason(resolver, name), removal_url=url)


def _is_listing(address: str) -> bool:
    try:
        ip = ipaddress.IPv4Address(address)
    except ipaddress.AddressValueError:
        return False
    return ip in LISTED and ip not in ERROR_CODES


def _reason(resolver: dns.resolver.Resolver, name: str) -> str:
    # The reason is a courtesy: a listing without its TXT record is still a listing.
    try:
        answer = resolver.resolve(name, "TXT", search=False)
    except dns.exception.DNSException:
        return ""
    texts = [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]  # type: ignore[attr-defined]
    return " ".join(" / ".join(texts).split())[:MAX_REASON]


def render(ip: str, listings: Sequence[Listing]) -> str:
    """Return the listings as a few lines of Slack mrkdwn (plain enough for a terminal)."""
    listed = [x for x in listings if x.listed]
    unknown = [x for x in listings if x.unknown]
    if listed:
        head = _(":no_entry: {ip} is listed on {listed} of {total} blocklists").format(
            ip=ip, listed=len(listed), total=len(listings)
        )
    else:
        head = _(":white_check_mark: {ip} is on none of the {answered} blocklists that answered").format(
            ip=ip, answered=len(listings) - len(unknown)
        )
    lines = [head]
    for x in listings:
        if x.listed:
            line = _("• {zone}: listed ({answer})").format(zone=x.zone, answer=x.answer)
            if x.reason:
                line += f" — {x.reason}"
            if x.removal_url:
                line += " — " + _("removal: {url}").format(url=x.removal_url)
            lines.append(line)
        elif x.unknown:
            lines.append(_("• {zone}: unknown ({error})").format(zone=x.zone, error=x.error))
        else:
            lines.append(_("• {zone}: not listed").format(zone=x.zone))
    return "\n".join(lines)


def blocklist_report(config: Config, server_config: ServerConfig) -> str | None:
    """Return the blocklist verdicts for the server's public_ip as text; None when there is nothing to check.

    Never raises: a blocklist check must not stop an incident.
    """
    if not server_config.public_ip or not config.dnsbl_zones:
        return None
    try:
        ip = validate_ipv4(server_config.public_ip)
        listings = check_listings(
            ip, config.dnsbl_zones, servers=config.dns_servers, timeout=config.dns_timeout_seconds
        )
    except (ValueError, dns.exception.DNSException) as exc:
        return _(":warning: blocklists not checked for {server}: {error}").format(server=server_config.name, error=exc)
    return render(ip, listings)
