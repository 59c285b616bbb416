"""The SSH executor against the lab's real OpenSSH: results, streams, stdin, and every failure mode."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from bot.errors import AuthFailed, CommandFailed, CommandTimeout, HostKeyMismatch, HostUnreachable
from bot.mail.commands import STDERR_TAIL_BYTES
from bot.mail.executor import SSHExecutor
from tests.integration.lab import Lab, free_ports


@pytest.fixture(params=["root", "mailfixop"])
def executor(request: pytest.FixtureRequest, lab: Lab):
    """An executor as root and as the NOPASSWD sudo user."""
    ex = SSHExecutor(lab.server_config(user=request.param))
    yield ex
    ex.close()


def test_run_returns_exit_status_stdout_and_runs_as_root(executor: SSHExecutor) -> None:
    """A command's stdout and status come back; a non-root user acts through sudo as root."""
    result = executor.run(["id", "-un"])
    assert result.exit_status == 0 and result.stdout == b"root\n" and result.duration > 0


def test_a_failing_command_raises_command_failed_with_its_result(executor: SSHExecutor) -> None:
    """A non-zero exit raises CommandFailed carrying the result; check=False returns it."""
    with pytest.raises(CommandFailed, match="status 3") as caught:
        executor.run(["sh", "-c", "echo oops >&2; exit 3"])
    assert caught.value.result.exit_status == 3 and "oops" in caught.value.result.stderr_tail
    assert executor.run(["false"], check=False).exit_status == 1


def test_arguments_are_quoted_not_interpreted(executor: SSHExecutor) -> None:
    """Shell metacharacters in an argument arrive as literal text."""
    hostile = "$(id); `reboot` | & > /tmp/x '\" \n"
    assert executor.run(["printf", "%s", hostile]).stdout == hostile.encode()


def test_stream_yields_every_line_of_a_large_output(executor: SSHExecutor) -> None:
    """300,000 lines (about 2 MB, more than a channel window) stream in order, split on newlines."""
    count = 0
    last = b""
    for line in executor.stream(["seq", "1", "300000"]):
        count += 1
        last = line
    assert count == 300_000 and last == b"300000"


def test_blocks_hold_whole_lines_and_lose_nothing(executor: SSHExecutor) -> None:
    """Blocks are cut after a newline, whatever the SSH packets were; a last line without one comes last."""
    process = executor.start(["sh", "-c", "seq 1 300000; printf tail"])
    process.close_stdin()
    blocks = list(process.blocks())
    process.wait()
    assert len(blocks) > 1 and all(block.endswith(b"\n") for block in blocks[:-1])
    assert b"".join(blocks) == b"".join(b"%d\n" % n for n in range(1, 300_001)) + b"tail"


def test_stdin_bytes_and_chunks_reach_the_command_intact(executor: SSHExecutor) -> None:
    """Several MB of stdin, given at once or as chunks, arrive byte for byte."""
    data = bytes(range(256)) * 20_000  # 5 MB
    expected = hashlib.sha256(data).hexdigest().encode()
    assert executor.run(["sha256sum"], stdin=data).stdout.split()[0] == expected
    chunks = (data[i : i + 65536] for i in range(0, len(data), 65536))
    assert executor.run(["sha256sum"], stdin=chunks).stdout.split()[0] == expected


def test_a_flood_of_stderr_does_not_stall_and_only_its_tail_is_kept(executor: SSHExecutor) -> None:
    """6 MB of stderr while reading stdin (postsuper's pattern) completes; the tail is bounded."""
    script = "cat >/dev/null & seq 1 800000 >&2; wait; echo done"
    result = executor.run(["sh", "-c", script], stdin=b"x\n" * 500_000, timeout=60)
    assert result.stdout == b"done\n"
    assert len(result.stderr_tail) <= STDERR_TAIL_BYTES and result.stderr_tail.endswith("800000\n")


def test_a_command_past_its_timeout_raises_and_the_executor_still_works(executor: SSHExecutor) -> None:
    """`sleep 30` with timeout 1 raises CommandTimeout within seconds; the next command runs."""
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="127.0.0.1"):
        executor.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - started < 5
    assert executor.run(["echo", "still here"]).stdout == b"still here\n"


def test_one_connection_is_reused_and_reopened_after_it_drops(lab: Lab) -> None:
    """Consecutive commands share a transport; a dropped one is replaced transparently."""
    ex = SSHExecutor(lab.server_config())
    try:
        ex.run(["true"])
        first = ex._transport()
        ex.run(["true"])
        assert ex._transport() is first
        first.close()  # what a network drop looks like from here
        assert ex.run(["echo", "back"]).stdout == b"back\n"
        assert ex._transport() is not first
    finally:
        ex.close()


def test_a_changed_host_key_is_refused(lab: Lab) -> None:
    """A host key that differs from known_hosts raises HostKeyMismatch naming the fingerprint."""
    ex = SSHExecutor(lab.server_config(known_hosts=lab.wrong_known_hosts))
    with pytest.raises(HostKeyMismatch, match="host key changed: got SHA256:"):
        ex.run(["true"])


def test_an_unknown_host_key_is_refused_and_never_added(lab: Lab, tmp_path: Path) -> None:
    """A server absent from known_hosts is refused, and known_hosts stays empty."""
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    ex = SSHExecutor(lab.server_config(known_hosts=empty))
    with pytest.raises(HostKeyMismatch, match="not in known_hosts"):
        ex.run(["true"])
    assert empty.read_text() == ""


def test_a_wrong_client_key_is_auth_failed(lab: Lab) -> None:
    """The server refusing our key raises AuthFailed."""
    ex = SSHExecutor(lab.server_config(key_file=lab.wrong_client_key))
    with pytest.raises(AuthFailed, match="refused the key for user 'root'"):
        ex.run(["true"])


def test_a_missing_key_file_is_auth_failed(lab: Lab, tmp_path: Path) -> None:
    """An unreadable key file is reported without a connection attempt."""
    ex = SSHExecutor(lab.server_config(key_file=tmp_path / "nope"))
    with pytest.raises(AuthFailed, match="cannot read key file"):
        ex.run(["true"])


def test_a_closed_port_is_host_unreachable(lab: Lab) -> None:
    """Nothing listening raises HostUnreachable quickly."""
    (port,) = free_ports(1)
    ex = SSHExecutor(lab.server_config(port=port))
    started = time.monotonic()
    with pytest.raises(HostUnreachable, match=f"port {port}"):
        ex.run(["true"])
    assert time.monotonic() - started < 5


def test_an_unroutable_host_times_out_as_host_unreachable(lab: Lab) -> None:
    """A host that never answers raises HostUnreachable after the connect timeout."""
    ex = SSHExecutor(lab.server_config(host="10.255.255.1", connect_timeout_seconds=1.0))
    started = time.monotonic()
    with pytest.raises(HostUnreachable):
        ex.run(["true"])
    assert time.monotonic() - started < 10


def test_sudo_without_nopasswd_is_a_clear_error_not_a_hang(lab: Lab) -> None:
    """For a user whose sudo wants a password, the error says so at once."""
    ex = SSHExecutor(lab.server_config(user="nosudo"))
    started = time.monotonic()
    with pytest.raises(CommandFailed, match="sudo needs NOPASSWD for mailfix's user"):
        ex.run(["/usr/sbin/postqueue", "-j"])
    assert time.monotonic() - started < 10
    ex.close()
