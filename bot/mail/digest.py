"""The queue's digest: `postqueue -j` read on the server by a fixed perl script, so that a diagnosis
receives a short line of text per message instead of a JSON object.

What the diagnosis reads is the queue, ID, sender and recipients of each message; the listing also
carries a delay_reason per recipient (most of a deferred flood's listing), JSON's punctuation and
members nobody reads. Sending, decrypting and parsing all of it costs more than the listing itself.
The script prints, in order:

    mailfix-digest 1                          the header: what follows is a digest (without perl,
                                              "mailfix-listing" and the listing whole)
    d<TAB>QUEUEID<TAB>sender<TAB>recipient... a message it read (the first letter of its queue);
                                              sender and recipients lower-cased
    j<TAB>{"queue_name": ...}                 a line it would not read, as postqueue printed it
    .<TAB>bytes<TAB>oldest                    the end: the sizes of the messages it read summed,
                                              and their oldest arrival

It reads a line only when the whole line has Postfix's own shape, is valid JSON, and every address
in it is plain printable ASCII without quotes or backslashes; anything else (escapes, non-ASCII, members it does
not know, anything that is not JSON) travels as it came and the bot parses it as JSON, as it would
parse a whole listing. So a crafted line can make the diagnosis slower, never make it read another
address. Output that starts with neither header, or a digest without its end line, is an error,
never a shorter queue.
"""

from __future__ import annotations

import re
import shlex
from itertools import chain

from bot.errors import CommandFailed
from bot.i18n import _
from bot.mail.queue import QUEUE_NAMES, Batch, QueueAggregator, null_sender_named

HEADER = b"mailfix-digest 1"
WHOLE = b"mailfix-listing"  # the header without perl: the listing follows whole
QUEUE_OF = {name[0]: name for name in QUEUE_NAMES}  # the script writes a queue's first letter
_WITHOUT_AT = re.compile(r"\t[^@\t]*+(?=\t|\Z)")  # a recipient without "@" (searched from the tab before the first)
_READ = frozenset(f"{letter}\t".encode() for letter in QUEUE_OF)

# $S: printable ASCII but for " and \ (no escape, no control character, so no tab or newline).
# $J: a JSON string's text in ASCII, escapes allowed but for lone surrogates (what orjson refuses).
# $N: a JSON number as Postfix prints sizes and times.
# $list: the recipients exactly as Postfix prints them: an address, maybe a delay_reason, nothing
# else (a second "address" would be the one a JSON parser keeps). In a $list that matched, a
# `{"address": "` can only start a recipient (inside a string every " is escaped), so the addresses
# come out by a plain global match, in order.
_SCRIPT = r"""use strict;
my $S = qr/[\x20\x21\x23-\x5b\x5d-\x7e]*+/;
my $J = qr/(?:[\x20\x21\x23-\x5b\x5d-\x7e]++|\\["\\\/bfnrt]|\\u(?![dD][89a-fA-F])[0-9a-fA-F]{4})*+/;
my $N = qr/(?:0|[1-9][0-9]{0,14})/;
my $head = qr/^\{"queue_name": "(active|deferred|hold|incoming|maildrop)", "queue_id": "([0-9A-Za-z]++)", /;
my $sizes = qr/"arrival_time": ($N), "message_size": ($N), (?:"forced_expire": (?:true|false), )?/;
my $tail = qr/"sender": "($S)", "recipients": \[(.*)\]\}\z/;
my $list = qr/\A(?:\{"address": "$S"(?:, "delay_reason": "$J")?\}(?:, (?=\{)|\z))*+\z/;
my ($bytes, $oldest) = (0);
print "@HEADER@\n";
while (my $line = <STDIN>) {
    chomp $line;
    next if $line eq '';
    if ($line =~ /$head$sizes$tail/o) {
        my ($queue, $id, $arrival, $size, $sender, $to) = (substr($1, 0, 1), $2, $3, $4, $5, $6);
        if ($to =~ $list) {
            $bytes += $size;
            $oldest = $arrival if !defined $oldest || $arrival < $oldest;
            print "$queue\t$id\t", lc(join("\t", $sender, $to =~ /\{"address": "($S)"/g)), "\n";
            next;
        }
    }
    print "j\t", $line, "\n";
}
print join("\t", '.', $bytes, $oldest // ''), "\n";
"""


def digest_filter() -> str:
    """Return the shell filter that turns `postqueue -j` into the digest (the whole listing without perl)."""
    script = shlex.quote(_SCRIPT.replace("@HEADER@", HEADER.decode()))
    return f"if command -v perl >/dev/null 2>&1; then LC_ALL=C perl -e {script}; else echo {WHOLE.decode()}; cat; fi"


class DigestReader:
    """Feeds an aggregator the batches of a listing that may be a digest (or, without perl, plain JSON)."""

    def __init__(self, aggregator: QueueAggregator, host: str) -> None:
        self.aggregator = aggregator
        self.host = host
        self.is_digest: bool | None = None  # known at the first line
        self.ended = False

    def add_batch(self, lines: list[bytes]) -> None:
        if self.is_digest is None and lines:
            if lines[0] not in (HEADER, WHOLE):
                raise self._broken(_("the queue listing did not start as mailfix's filter starts it"))
            self.is_digest = lines[0] == HEADER
            lines = lines[1:]
        if not self.is_digest:
            self.aggregator.add_batch(lines)
            return
        raw: list[bytes] = []  # lines the script passed as they came
        read: list[str] = []  # lines it read; each run goes in as it comes, so the order stays
        for line in lines:
            if self.ended and line:
                raise self._broken(_("the queue digest went on after its end"))
            if line[:2] == b"j\t":
                if read:
                    self.aggregator.add_parsed(_batch_of(read, self.aggregator))
                    read = []
                raw.append(line[2:])
            elif line[:2] in _READ:
                if raw:
                    self.aggregator.add_batch(raw)
                    raw = []
                read.append(line.decode("utf-8", "replace"))
            elif line[:1] == b".":
                self._end(line)
            elif line:
                raise self._broken(_("the queue digest has a line it should not have"))
        if raw:
            self.aggregator.add_batch(raw)
        if read:
            self.aggregator.add_parsed(_batch_of(read, self.aggregator))

    def finish(self) -> None:
        """Raise CommandFailed if the output was empty or a digest stopped before its end (cut short)."""
        if self.is_digest is None:
            raise self._broken(_("the queue listing came back empty"))
        if self.is_digest and not self.ended:
            raise self._broken(_("the queue digest was cut short"))

    def _end(self, line: bytes) -> None:
        _, size, oldest = line.split(b"\t")
        self.ended = True
        self.aggregator.add_totals(total_bytes=int(size), oldest_arrival=int(oldest) if oldest else None)

    def _broken(self, reason: str) -> CommandFailed:
        return CommandFailed(self.host, reason)


def _batch_of(lines: list[str], aggregator: QueueAggregator) -> Batch:
    """Return the Batch of the digest's message lines (queue letter, ID, sender, recipients; tab-separated).

    Only the few messages whose recipients hold the mail domain's "@domain", or an address without
    "@", are searched for local recipients (a flood sends to millions of others).
    """
    suffix = aggregator.mail_suffix
    rows = [line.split("\t") for line in lines]
    ids = [fields[1] for fields in rows]
    senders = null_sender_named([fields[2] for fields in rows])
    # A message counts once per distinct recipient.
    to = [fields[3:] if len(fields) < 5 else list(dict.fromkeys(fields[3:])) for fields in rows]
    local: tuple[list[str], list[str]] = ([], [])
    for line, fields, found in zip(lines, rows, to, strict=True):
        start = len(fields[0]) + len(fields[1]) + len(fields[2]) + 3  # where the recipients begin
        if line.find(suffix, start) >= 0 or _WITHOUT_AT.search(line, start - 1):
            for address in found:
                if aggregator.is_local(address):
                    local[0].append(address)
                    local[1].append(fields[1])
    return Batch(
        queue_names=[QUEUE_OF[fields[0]] for fields in rows],
        ids=ids,
        senders=senders,
        recipients=list(chain.from_iterable(to)),
        recipient_ids=[],
        total_bytes=0,
        oldest_arrival=None,
        malformed=0,
        local_recipients=local,
    )
