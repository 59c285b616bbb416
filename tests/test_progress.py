"""Progress of the long steps: the throttle's pace, the hook from the steps down, and the terminal's bar."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys

from bot.core.progress import Progress, Reporter, Throttle
from bot.terminal.progressbar import ProgressBar, render
from tests.clitools import ROOT, fake_env, spawn
from tests.conftest import DIRECTOR, OPERATOR


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_shows_at_most_one_value_per_interval_never_backwards_and_the_final_one_on_flush():
    clock, shown = FakeClock(), []
    throttle = Throttle(shown.append, interval=3.0, clock=clock)
    for second in range(10):  # ten updates a second for ten seconds, one going backwards at 5 s
        for tenth in range(10):
            clock.now = 100.0 + second + tenth / 10
            done = 1_000 * second + 100 * tenth
            throttle.update(Progress("deleting", 4_000 if second == 5 and tenth == 5 else done, 10_000))
    throttle.update(Progress("deleting", 9_950, 10_000))  # the last count, between two showings
    throttle.flush()
    times_and_counts = [(p.done, p.total) for p in shown]
    assert len(shown) == 4  # 3 s, 6 s, 9 s, and the final count flushed
    assert [p.done for p in shown] == sorted(p.done for p in shown)  # never backwards
    assert times_and_counts[:3] == [(3_000, 10_000), (6_000, 10_000), (9_000, 10_000)]
    assert shown[-1] == Progress("deleting", 9_950, 10_000)


def test_the_throttle_shows_nothing_for_a_step_shorter_than_its_interval():
    clock, shown = FakeClock(), []
    throttle = Throttle(shown.append, interval=3.0, clock=clock)
    clock.now += 2.9
    throttle.update(Progress("holding", 10))
    assert shown == [] and throttle.shown is None


def test_a_failing_display_never_fails_the_operation_and_is_not_called_again():
    calls = []

    def show(progress):
        calls.append(progress)
        raise RuntimeError("Slack is down")

    with Reporter(show, "deleting", total=5) as report:
        report(1)
        report(2)
    assert calls == [Progress("deleting", 1, 5)]


def test_a_count_past_its_total_raises_the_total_instead_of_showing_more_than_all():
    shown = []
    with Reporter(shown.append, "deleting", total=5) as report:
        report(7)
    assert shown == [Progress("deleting", 7, 7), None]


def test_the_delete_steps_report_rising_counts_of_what_they_counted_then_clear(runbook, server, notifier):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    notifier.progress.clear()
    runbook.approve(incident.id, actor=DIRECTOR)
    deleting = [p for _, p in notifier.progress if p is not None and p.label.startswith("deleting (from")]
    assert [p.done for p in deleting] == [25 * n for n in range(1, 10)] + [240]  # 240 sent from the address
    assert {p.total for p in deleting} == {240}  # the count taken before the delete
    labels = [p.label if p else None for _, p in notifier.progress]
    assert labels.count(None) == 3  # each of the three deletes ended its progress


def test_releasing_the_held_mail_of_the_wrong_account_reports_rising_counts_then_clears(runbook, server, notifier):
    incident = runbook.start(server="mail1", actor=OPERATOR)
    notifier.progress.clear()
    runbook.reject(incident.id, actor=DIRECTOR)  # "not this account": its held mail goes out again
    releasing = [p for _, p in notifier.progress if p is not None and p.label.startswith("releasing (")]
    by_address = [p.done for p in releasing if p.label == "releasing (from victim@example.org)"]
    assert by_address == [25 * n for n in range(1, 10)] + [240]  # the 240 held that were sent from the address
    assert any(p.label == "releasing (login victim)" for p in releasing)
    labels = [p.label if p else None for _, p in notifier.progress]
    assert labels.count(None) >= 2  # each of the two releases ended its progress


def test_a_notifier_that_fails_to_show_progress_does_not_fail_the_cleanup(runbook, server, notifier):
    def broken(incident, progress):
        raise ConnectionError("no route to Slack")

    notifier.step_progress = broken  # type: ignore[method-assign]
    incident = runbook.start(server="mail1", actor=OPERATOR)
    incident = runbook.approve(incident.id, actor=DIRECTOR)
    assert incident.state == "monitoring"
    assert not any(m.login == "victim" for m in server.messages)


def test_the_bar_draws_in_place_and_ends_its_line_with_the_final_count():
    class Stream:
        text = ""

        def write(self, text):
            self.text += text

        def flush(self):
            pass

    clock, stream = FakeClock(), Stream()
    bar = ProgressBar(stream, clock=clock)  # type: ignore[arg-type]
    for done in range(0, 70_001, 5_000):  # 15 updates 0.125 s apart
        clock.now += 0.125
        bar.show(Progress("deleting", done, 70_000))
    bar.show(None)
    assert stream.text.count("\r") == 7  # every other one (0.2 s apart at least), the last one among them
    assert stream.text.endswith("\rdeleting… [" + "#" * 24 + "] 70,000 / 70,000\x1b[K\n")
    assert render(Progress("deleting", 35_000, 70_000)) == "deleting… [" + "#" * 12 + "-" * 12 + "] 35,000 / 70,000"
    assert render(Progress("reading the queue", 1234)) == "reading the queue… 1,234"


def run_with_stderr_on_a_terminal(env: dict[str, str], user: str, *argv: str) -> tuple[int, str, str]:
    """Run `mailfix` with stderr on a pseudo-terminal and stdout on a pipe; return code, stdout, stderr."""
    master, slave = pty.openpty()
    full = {**os.environ, **env, "SUDO_USER": user}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", *argv], cwd=ROOT, env=full, stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        try:
            chunk = os.read(master, 4096) if ready else b""
        except OSError:  # EIO: the process closed its end
            chunk = b""
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    return proc.wait(timeout=60), out, b"".join(chunks).decode()


def test_diagnose_start_and_approve_draw_a_progress_bar_on_a_terminal_and_nothing_on_a_pipe(tmp_path):
    env = fake_env(tmp_path) | {"FAKE_MAILSERVER_PROGRESS_PAUSE": "0.06"}  # 315 messages: about 1 s a step
    code, out, err = run_with_stderr_on_a_terminal(env, "alt", "diagnose")
    assert code == 3 and "Suspect: victim@example.org" in out
    assert "\rreading the queue… " in err and err.endswith("reading the queue… 315\x1b[K\r\n")  # pty: \n → \r\n
    piped = spawn(env, "alt", "diagnose")
    _, piped_err = piped.communicate(timeout=60)
    assert piped.returncode == 3 and piped_err == ""  # not a terminal: no bar, no carriage returns
    code, out, err = run_with_stderr_on_a_terminal(env, "alt", "start", "mail1")
    assert code == 0, err
    assert "\rholding (from victim@example.org)… [" in err and "] 250 / 250\x1b[K\r\n" in err
    code, out, err = run_with_stderr_on_a_terminal(env, "boss", "approve", "1", "--account", "victim@example.org")
    assert code == 0, err
    assert "\rdeleting (from victim@example.org)… [" in err and "] 250 / 250\x1b[K\r\n" in err
    assert "Deleted 250 queued messages (from victim@example.org)" in out
