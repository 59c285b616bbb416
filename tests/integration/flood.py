"""Inject a realistic spam incident into the lab through real SMTP AUTH."""

from __future__ import annotations

import base64
import json
import os
import pwd
import random
import smtplib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.integration.lab import Lab

SUBJECTS = (
    "You have WON a $1000 gift card",
    "URGENT: verify your account now",
    "Cheap meds, no prescription",
    "Your invoice #{n} is overdue",
    "Make $5000/week from home",
    "Re: your package could not be delivered",
    "Hot singles in your area",
    "Crypto opportunity - 400% returns",
    "Final notice: claim your prize",
)
LEGIT_USERS = ("alice", "bob", "juana")
NULL_SENDER = "MAILER-DAEMON"
# Text that pads a spam body to a realistic size (real runs carry about 1 KB of HTML and text).
_FILLER = "".join(f"Offer {n}: limited time, click the link below to claim it.\n" for n in range(400))


@dataclass(frozen=True)
class FloodReport:
    """What flood() injected; from_login + forged messages were sent authenticated as `login`."""

    login: str
    from_login: int  # envelope sender login@domain
    forged: int  # envelope sender a random other address
    legit: int  # from alice/bob/juana, authenticated as themselves
    bounces: int  # null sender, addressed TO login@domain, deferred by defer_transports
    inbox: int  # written straight into the login's INBOX, not queued
    forged_senders: frozenset[str]

    @property
    def queued(self) -> int:
        """Return how many messages this flood added to the Postfix queue."""
        return self.from_login + self.forged + self.legit + self.bounces


def flood(
    lab: Lab,
    *,
    login: str = "victim",
    count: int = 2000,
    forged_fraction: float = 0.3,
    legit: int = 50,
    bounces: int = 20,
    inbox: int = 5,
    connections: int = 8,
    timeout: float = 120,
    wait: bool = True,
    recipients: tuple[int, int] = (1, 1),
    address_book: int = 10**6,
    body_bytes: int = 0,
) -> FloodReport:
    """Inject the incident, wait (unless told not to) until every queued message shows in `postqueue -j`.

    A real spam run sends each message to `recipients` (low, high) addresses drawn from an
    `address_book` of distinct addresses, with a body of about `body_bytes`.
    """
    rng = random.Random(f"{login}-{count}")  # noqa: S311 - repeatable, not secret
    address = f"{login}@{lab.domain}"
    forged = round(count * forged_fraction)
    senders = [f"promo{rng.randrange(1000)}@spam.example" for _ in range(forged)] + [address] * (count - forged)
    rng.shuffle(senders)
    before = senders_queued(lab)

    # Each job is one SMTP connection: (AUTH login or None, kind, [(sender, [recipient, ...])]).
    jobs: list[tuple[str | None, str, list[tuple[str, list[str]]]]] = []
    for i in range(connections):
        jobs.append((login, "spam", [(s, _recipients(rng, recipients, address_book)) for s in senders[i::connections]]))
    for i, user in enumerate(LEGIT_USERS):
        n = legit // len(LEGIT_USERS) + (i < legit % len(LEGIT_USERS))
        mine = f"{user}@{lab.domain}"
        jobs.append((user, "legit", [(mine, [f"partner{k}@customer.example"]) for k in range(n)]))
    # Bounces come from "remote MTAs": unauthenticated from 127.0.0.0/8 (permit_mynetworks).
    # X-Lab: bounce marks them as unauthenticated test mail.
    jobs.append((None, "bounce", [("", [address])] * bounces))

    with ThreadPoolExecutor(max_workers=connections) as pool:
        futures = [pool.submit(_send, lab, *job, rng.randrange(10**9), body_bytes) for job in jobs if job[2]]
        for future in futures:
            future.result()
    for n in range(inbox):
        _deliver_to_inbox(lab, login, n)

    report = FloodReport(
        login=login,
        from_login=count - forged,
        forged=forged,
        legit=legit,
        bounces=bounces,
        inbox=inbox,
        forged_senders=frozenset(s for s in senders if s != address),
    )
    # Counted by sender: mail already queued may leave meanwhile (a flush, a delivery), which a count of
    # the whole queue would take for flood mail that never arrived.
    sent = Counter(sender or NULL_SENDER for job in jobs for sender, _ in job[2])
    deadline = time.monotonic() + timeout
    while wait and (missing := _missing(senders_queued(lab), before, sent)):
        if time.monotonic() > deadline:
            got = report.queued - missing
            raise TimeoutError(f"only {got} of {report.queued} flood messages reached the queue")
        time.sleep(0.2)
    return report


def senders_queued(lab: Lab) -> Counter[str]:
    """How many queued messages each envelope sender has (postqueue names the null sender MAILER-DAEMON)."""
    return Counter(str(entry.get("sender") or NULL_SENDER) for entry in queue_entries(lab))


def _missing(now: Counter[str], before: Counter[str], sent: Counter[str]) -> int:
    """How many of the messages `sent` (by sender) are not in the queue yet."""
    return sum(max(0, before[sender] + count - now[sender]) for sender, count in sent.items())


def queue_entries(lab: Lab) -> list[dict]:
    """Return `postqueue -j` as a list of dicts (one per queued message)."""
    out = lab.run(["postqueue", "-j"]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def queue_size(lab: Lab) -> int:
    return len(queue_entries(lab))


def _recipients(rng: random.Random, shape: tuple[int, int], address_book: int) -> list[str]:
    """Return a spam message's distinct recipients, drawn from the address book."""
    count = min(rng.randint(*shape), address_book)
    return [f"user{n}@example.com" for n in rng.sample(range(address_book), count)]


def _send(
    lab: Lab,
    login: str | None,
    kind: str,
    messages: list[tuple[str, list[str]]],
    seed: int,
    body_bytes: int = 0,
) -> None:
    rng = random.Random(seed)  # noqa: S311
    with smtplib.SMTP(lab.host, lab.smtp_port, local_hostname="client.flood.example", timeout=30) as smtp:
        smtp.ehlo()
        if login is not None:
            # One AUTH PLAIN, by hand: smtp.login() would retry other mechanisms on failure (slow).
            token = base64.b64encode(f"\0{login}\0{lab.passwords[login]}".encode()).decode()
            code, reply = smtp.docmd("AUTH", "PLAIN " + token)
            if code != 235:
                raise RuntimeError(f"AUTH PLAIN as {login} failed: {code} {reply!r}")
        for sender, recipients in messages:
            if kind == "spam":
                subject = rng.choice(SUBJECTS).format(n=rng.randrange(10**5))
            else:
                subject = {"legit": "Meeting notes", "bounce": "Undelivered Mail Returned to Sender"}[kind]
            header = sender or f"MAILER-DAEMON@{lab.domain}"
            body = _message(header, recipients[0], subject, f"X-Lab: {kind}\n", body_bytes if kind == "spam" else 0)
            smtp.sendmail(sender, recipients, body)


def _message(sender: str, recipient: str, subject: str, extra: str, body_bytes: int = 0) -> bytes:
    return (
        (
            f"From: {sender}\nTo: {recipient}\nSubject: {subject}\nDate: {formatdate()}\n"
            f"Message-ID: {make_msgid(domain='flood.example')}\n{extra}\n"
            "Hello,\n\nThis message was generated by the mailfix integration lab.\n"
            + _FILLER[: max(0, body_bytes - 250)]
        )
        .replace("\n", "\r\n")
        .encode()
    )


def _deliver_to_inbox(lab: Lab, user: str, n: int) -> None:
    # Delivered by hand into Maildir/new, as Postfix's local(8) would: local mail stays queued here.
    entry = pwd.getpwnam(user)
    new = lab.maildir(user) / "new"
    name = f"{time.time():.6f}.lab{n}_{os.getpid()}.mail.{lab.domain}"
    path = new / name
    path.write_bytes(
        _message(f"colleague{n}@partner.example", f"{user}@{lab.domain}", f"Quarterly report {n}", "X-Lab: inbox\n")
    )
    os.chown(path, entry.pw_uid, entry.pw_gid)
