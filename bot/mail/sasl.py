"""Attribute queued mail to SASL logins from the Postfix log.

smtpd logs one line per accepted message, and pickup one per message submitted with sendmail:
`Nov 27 13:45:01 mail postfix/smtpd[812]: 4XyZ: client=h[10.0.0.9], sasl_method=PLAIN, sasl_username=victim`
`Nov 27 13:45:02 mail postfix/pickup[90]: 5AbC: uid=0 from=<root>`
in syslog format (the day may be space-padded, `Dec  1`), in Postfix's own `maillog_file` format
(`Dec 01 13:45:01 mail ...`) or in rsyslog's RFC 3339 format (`2024-11-27T13:45:01.123456+00:00 mail ...`).
Only those lines count, and only at their fixed position: the program field right after the
timestamp and host names smtpd or pickup (under any syslog_name), and the message starts with the
queue ID. Mail carries text Postfix logs verbatim elsewhere (an envelope sender in qmgr's `from=<...>`,
a header that header_checks warn about, an AUTH= sender in smtpd's own line): a stolen login writes
imitation `4XyZ: client=..., sasl_username=alice` entries there to pin its flood on someone else, so
nothing else on a line, and no other line, may name or clear a login. Queue IDs can be reused, so for
each ID the newest line wins (the rotated `.1` file is read first, then the current one) — including
a newer `client=` line without a SASL login, or a pickup `uid=` line, which clears the ID's attribution.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bot.core.mailserver import Ranked
from bot.i18n import _
from bot.mail.commands import command_failed, reblocked
from bot.mail.executor import SSHExecutor
from bot.mail.queue import account_aliases
from bot.mail.ranking import ranked
from bot.mail.restrictions import Blocking, read_blocking

# The server sends only the lines that may name a queue ID's login. grep -F finds the candidates
# (0.07 CPU-s for 100 MB of log; the anchored grep -E below takes 0.25 s over the whole log), then
# grep -E, over that small output only, keeps the lines whose program field names smtpd or pickup
# and whose message starts with a queue ID and `client=` or `uid=`. It is looser than _ENTRY_RE,
# which decides, and only keeps injected lines off the wire. `-a`: a NUL in the log (a crash) must
# not turn grep's output into "Binary file matches". Lines travel whole (about 140 bytes per
# message): the prefix is what tells a genuine line from text that imitates one.
LOG_FILTER = ["env", "LC_ALL=C", "grep", "-a", "-h", "-F", "-e", ": client=", "-e", ": uid=", "--"]
_SELECT_ERE = (
    r"^([A-Z][a-z]{2} [ 0-9][0-9] [0-9:.]+|[0-9]{4}-[0-9]{2}-[0-9]{2}T[^ ]+) [^ ]+ [^ []+/"
    r"(smtpd|pickup)\[[0-9]+\]: [0-9A-Za-z]+: (client|uid)="
)
LOG_SELECT = f"LC_ALL=C grep -a -E -e '{_SELECT_ERE}'"
# The timestamp: syslog's `Nov 27 13:45:01` (the day space- or zero-padded, as Postfix's maillog_file
# writes it; a fraction allowed) or RFC 3339's `2024-11-27T13:45:01.123456+00:00`.
_TIMESTAMP = (
    r"(?:[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:?[0-9]{2}))"
)
# One entry per accepted message: its queue ID and, when it authenticated, the SASL login (else "").
# A whole line from its start (the `\n` before it: parse_sasl_lines puts one before each block),
# single spaces between the fields, so the program is the 5th field of a syslog line and the 3rd of
# an RFC 3339 one, and nothing a sender controls can come before it. smtpd writes `client=NAME[ADDR]`
# then, when the client authenticated, `, sasl_method=M, sasl_username=LOGIN` at once, before any
# sasl_sender (AUTH=, the client's text) or orig_client: a login anywhere else names nobody.
_ENTRY_RE = re.compile(
    rf"\n{_TIMESTAMP} [^\s]+ [^\s\[\]]+/"
    r"(?:smtpd\[[0-9]+\]: (?=[0-9A-Za-z]+: client=)|pickup\[[0-9]+\]: (?=[0-9A-Za-z]+: uid=[0-9]+ from=<))"
    r"([0-9A-Za-z]+): (?:client=[^\s,]+(?:, sasl_method=[^\s,]*, sasl_username=([^\s,]+))?|uid=)"
)
_MISSING_RE = re.compile(r"grep: (.+): No such file or directory")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SaslLog:
    """Queue ID to SASL login, from the log files that could be read."""

    login_of: dict[str, str]
    read: tuple[str, ...]  # files found and read
    missing: tuple[str, ...]  # files that do not exist (not an error; reported)
    current: str = ""  # the configured log path

    @property
    def warnings(self) -> tuple[str, ...]:
        """Return a note when the current log is missing (a missing rotated file is routine)."""
        if self.current and self.current in self.missing:
            return (
                _("Postfix log {path} not found: queued mail cannot be tied to SASL logins").format(path=self.current),
            )
        return ()


def parse_sasl_lines(blocks: Iterable[bytes]) -> dict[str, str]:
    """Return queue ID -> lower-cased SASL login from log lines, or blocks of whole lines.

    The later entry wins for a reused ID; an entry without a login forgets the ID. One findall
    per block keeps the per-message work in C (100,000 entries in a flood); the newline put before
    the block lets the expression start at its first line too, and find line starts quickly.
    """
    login_of: dict[str, str] = {}
    for block in blocks:
        login_of.update(_ENTRY_RE.findall("\n" + block.decode("utf-8", "replace")))
    # In place, to keep the peak low: one shared string per login, then the forgotten IDs go.
    folded = {login: sys.intern(login.lower()) for login in set(login_of.values())}
    for queue_id, login in login_of.items():  # only values change: iterating stays valid
        login_of[queue_id] = folded[login]
    for queue_id in [queue_id for queue_id, login in login_of.items() if not login]:
        del login_of[queue_id]
    return login_of


def log_files(path: str) -> tuple[str, str]:
    """Return the rotated file and the current one, in the order they must be read."""
    return f"{path}.1", path


def read_sasl_log(executor: SSHExecutor, path: str, *, timeout: float | None = None, compress: bool = False) -> SaslLog:
    """Fetch smtpd's `client=` and pickup's `uid=` lines (rotated file first) through `executor` and parse them.

    With `compress` they travel gzip'ed (whole lines compress about sevenfold).
    """
    argv = reblocked([*LOG_FILTER, *log_files(path)], through=LOG_SELECT, gzip=compress)
    process = executor.start(argv, timeout=timeout, gunzip=compress)
    process.close_stdin()
    login_of = parse_sasl_lines(process.blocks())
    result = process.wait(check=False)
    missing = tuple(found[1] for found in _MISSING_RE.finditer(result.stderr_tail))
    other_errors = [line for line in result.stderr_tail.splitlines() if not _MISSING_RE.search(line)]
    # grep exits 1 when nothing matched and 2 when a file is missing; anything else is a failure.
    if result.exit_status not in (0, 1, 2) or any(line.strip() for line in other_errors):
        raise command_failed(executor.host, result)
    read = tuple(name for name in log_files(path) if name not in missing)
    return SaslLog(login_of=login_of, read=read, missing=missing, current=path)


def rank_logins(login_of: Mapping[str, str], queued_ids: Iterable[str], n: int) -> tuple[Ranked, ...]:
    """Return the `n` logins with the most messages among `queued_ids`."""
    counts: Counter[str] = Counter()
    for queue_id in queued_ids:
        login = login_of.get(queue_id)
        if login is not None:
            counts[login] += 1
    return ranked(counts, n)


# ---- the check_sasl_access map that blocks a login -------------------------------------------

BLOCK_ACTION = "REJECT Login blocked by mailfix: contact IT"
POSTMAP = "/usr/sbin/postmap"


def login_keys(login: str, mail_domain: str) -> tuple[str, ...]:
    """Return the map keys for `login`: Postfix may see the SASL username as `user` or `user@domain`."""
    return tuple(sorted(account_aliases(login, mail_domain)))


def set_block(map_text: str, keys: Iterable[str], *, blocked: bool) -> str:
    """Return `map_text` with `keys` mapped to REJECT (blocked) or removed, other lines untouched."""
    wanted = {key.lower() for key in keys}
    kept = [
        line
        for line in map_text.splitlines()
        if not (line.split() and not line.lstrip().startswith("#") and line.split()[0].lower() in wanted)
    ]
    if blocked:
        kept.extend(f"{key} {BLOCK_ACTION}" for key in sorted(wanted))
    return "".join(f"{line}\n" for line in kept)


def blocked_keys(map_text: str) -> set[str]:
    """Return the keys that the map rejects or holds."""
    found = set()
    for line in map_text.splitlines():
        words = line.split()
        if len(words) >= 2 and not words[0].startswith("#") and words[1].upper() in ("REJECT", "HOLD"):
            found.add(words[0].lower())
    return found


def read_map(executor: SSHExecutor, path: str) -> str:
    """Return the access map's source text ('' when it does not exist yet)."""
    result = executor.run(["cat", "--", path], check=False)
    if result.ok:
        return result.text
    if "No such file" in result.stderr_tail:
        return ""
    raise command_failed(executor.host, result)


# Replaces the map in one command (its new text on stdin), keeping its owner and mode, then
# rebuilds it: one SSH round trip where each step on its own would cost one.
# Arguments: postmap's path, the map's path, its type.
_WRITE_MAP = """tmp="$2.mailfix-new"
cp -p -- "$2" "$tmp" 2>/dev/null || install -m 0644 /dev/null "$tmp" || exit 1
cat > "$tmp" && mv -f -- "$tmp" "$2" && "$1" "$3:$2" || exit 1
/usr/sbin/postfix reload >/dev/null 2>&1 || true"""


def update_block(executor: SSHExecutor, path: str, keys: Iterable[str], *, blocked: bool) -> Blocking:
    """Block or unblock `keys` in the access map: rewrite it atomically, postmap it, reload Postfix.

    Returns which smtpd services consult the map (read every time: an admin may fix main.cf mid-incident)."""
    with ThreadPoolExecutor(max_workers=1) as pool:  # two independent reads, at the same time
        blocking = pool.submit(read_blocking, executor, path)
        current = read_map(executor, path)
        updated = set_block(current, keys, blocked=blocked)
        if updated == current:
            return blocking.result()
        # smtpd notices a rebuilt table by its mtime, in whole seconds: two changes within one second
        # would go unseen. The reload makes every smtpd reopen it (sessions in progress finish first).
        executor.run(["sh", "-c", _WRITE_MAP, "sh", POSTMAP, path, blocking.result().kind], stdin=updated.encode())
    log.info("%s: %s %s", executor.host, "blocked" if blocked else "unblocked", ", ".join(sorted(keys)))
    return blocking.result()
