"""Blocklist checks against a DNS server on loopback that the test controls (never a public resolver)."""

from __future__ import annotations

import dataclasses
import io
import time

import pytest

from bot.mail.dnsbl import blocklist_report, check_listings, parse_server, removal_url, validate_ipv4
from bot.terminal import cli
from tests.clitools import write_config
from tests.conftest import make_config
from tests.dnsserver import DNSServer

IP = "192.0.2.10"  # TEST-NET-1: reversed, 10.2.0.192
LISTED_NAME = "10.2.0.192.bl.spamcop.net"


@pytest.fixture
def dns_server():
    records = {
        LISTED_NAME: {"A": ["127.0.0.2"], "TXT": ["Blocked - see https://www.spamcop.net/bl.shtml?192.0.2.10"]},
        "10.2.0.192.refusing.test": {"A": ["127.255.255.254"]},
    }
    zones = {"bl.spamcop.net", "clean.test", "refusing.test"}
    with DNSServer(records=records, zones=zones, silent={"slow.test"}) as server:
        yield server


def test_a_listed_ip_comes_with_its_txt_reason_and_removal_page(dns_server):
    [listing] = check_listings(IP, ["bl.spamcop.net"], servers=[dns_server.address], timeout=2)
    assert listing.listed is True and listing.answer == "127.0.0.2"
    assert listing.reason == "Blocked - see https://www.spamcop.net/bl.shtml?192.0.2.10"
    assert listing.removal_url == "https://www.spamcop.net/bl.shtml"
    assert (f"{LISTED_NAME}.", "A") in dns_server.queries and (f"{LISTED_NAME}.", "TXT") in dns_server.queries


def test_nxdomain_means_not_listed(dns_server):
    [listing] = check_listings(IP, ["clean.test"], servers=[dns_server.address], timeout=2)
    assert (listing.listed, listing.reason, listing.error) == (False, "", "")
    assert dns_server.queries == [("10.2.0.192.clean.test.", "A")]


def test_a_zone_that_never_answers_is_unknown_after_the_timeout_and_does_not_hold_up_the_others(dns_server):
    began = time.monotonic()
    slow, listed, clean = check_listings(
        IP, ["slow.test", "bl.spamcop.net", "clean.test"], servers=[dns_server.address], timeout=0.5
    )
    assert time.monotonic() - began < 1.5  # the zones are asked at once, not one after the other
    assert slow.zone == "slow.test" and slow.listed is None and "no answer within 0.5s" in slow.error
    assert listed.listed is True and clean.listed is False


def test_a_blocklist_error_code_is_not_a_listing(dns_server):
    [listing] = check_listings(IP, ["refusing.test"], servers=[dns_server.address], timeout=2)
    assert listing.listed is None and "127.255.255.254" in listing.error


def test_a_refused_query_is_unknown_not_fatal(dns_server):
    [listing] = check_listings(IP, ["elsewhere.test"], servers=[dns_server.address], timeout=1)
    assert listing.listed is None and "REFUSED" in listing.error


def test_public_ip_must_be_ipv4():
    assert validate_ipv4(" 192.0.2.1 ") == "192.0.2.1"
    for bad in ("", "mail.example.org", "2001:db8::1", "192.0.2.300", "192.0.2"):
        with pytest.raises(ValueError, match="not an IPv4 address"):
            check_listings(bad, ["bl.spamcop.net"], servers=["127.0.0.1:9"], timeout=0.1)


def test_dns_servers_take_host_or_host_and_port():
    assert (parse_server("127.0.0.1").address, parse_server("127.0.0.1").port) == ("127.0.0.1", 53)
    assert parse_server("127.0.0.1:5353").port == 5353
    assert (parse_server("[::1]:5300").address, parse_server("[::1]:5300").port) == ("::1", 5300)
    with pytest.raises(ValueError):
        parse_server("resolver.example.org")


def test_removal_pages_are_known_for_well_known_zones_only():
    assert removal_url("zen.spamhaus.org") == "https://check.spamhaus.org/"
    assert removal_url("b.barracudacentral.org").startswith("https://www.barracudacentral.org/")
    assert removal_url("bl.example.net") == ""


def test_the_report_lists_each_zone_and_says_which_could_not_be_asked(tmp_path, dns_server):
    config = make_config(
        tmp_path, dnsbl_zones=("bl.spamcop.net", "clean.test", "slow.test"), dns_servers=(dns_server.address,)
    )
    config = dataclasses.replace(config, dns_timeout_seconds=0.5)
    server = dataclasses.replace(config.servers[0], public_ip=IP)
    report = blocklist_report(config, server)
    assert report is not None
    lines = report.splitlines()
    assert lines[0] == ":no_entry: 192.0.2.10 is listed on 1 of 3 blocklists"
    assert lines[1].startswith("• bl.spamcop.net: listed (127.0.0.2) — Blocked - see")
    assert lines[1].endswith("removal: https://www.spamcop.net/bl.shtml")
    assert lines[2] == "• clean.test: not listed"
    assert lines[3] == "• slow.test: unknown (no answer within 0.5s)"


def test_the_report_is_none_without_a_public_ip_and_a_warning_for_a_bad_one(tmp_path):
    config = make_config(tmp_path, dnsbl_zones=("bl.spamcop.net",), dns_servers=("127.0.0.1:9",))
    assert blocklist_report(config, config.servers[0]) is None
    bad = dataclasses.replace(config.servers[0], public_ip="mail.example.org")
    assert blocklist_report(config, bad) == (
        ":warning: blocklists not checked for mail1: public_ip 'mail.example.org' is not an IPv4 address"
    )


def test_mailfix_dnsbl_prints_the_listings(tmp_path, monkeypatch, dns_server):
    extra = f'dnsbl_zones = ["bl.spamcop.net", "clean.test"]\ndns_servers = ["{dns_server.address}"]\n'
    path = write_config(tmp_path, extra=extra)
    path.write_text(path.read_text() + f'public_ip = "{IP}"\n')
    monkeypatch.setenv("MAILFIX_CONFIG", str(path))
    out = io.StringIO()
    assert cli.main(["dnsbl", "mail1"], out=out) == 3  # 3: listed
    assert "192.0.2.10 is listed on 1 of 2 blocklists" in out.getvalue()
    assert "• clean.test: not listed" in out.getvalue()
