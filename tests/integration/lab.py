"""A real OpenSSH, Postfix and Dovecot on 127.0.0.1, for the integration tests.

sshd is the lab's own process (own config, host key and authorized keys in a temp dir).
Postfix and Dovecot are the machine's system instances, reconfigured for the lab:
every listener is on 127.0.0.1 and a free port, outbound and local mail stay queued.
The queue is the lab's while it runs: mail queued before the lab is moved aside at start and
put back at close, after every message the lab's tests queued has been deleted.
Needs root and the packages from `.ci/install-lab.sh`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bot.config import ServerConfig
from tests.integration import labconf as conf
from tests.integration.labconf import DOMAIN, DOVECOT_PID, HOST, MARKER, NOSUDO_USER, SASL_ACCESS, SUDO_USER

MAIL_USERS = ("victim", "juan", "juana", "alice", "bob")
SUDOERS = Path("/etc/sudoers.d/mailfix-lab")
DOVECOT_LOCAL = Path("/etc/dovecot/local.conf")  # Debian's dovecot.conf includes it last
DOVECOT_SSL = Path("/etc/dovecot/conf.d/10-ssl.conf")
MASTER_CF = Path("/etc/postfix/master.cf")
MAIN_CF = Path("/etc/postfix/main.cf")
LOCK = Path("/run/mailfix-lab.lock")  # one lab per machine: they share the system Postfix/Dovecot
# Queue subdirectories that hold one file per message (named by its queue ID), then the
# per-message delivery logs. `flush/` (per destination), `pid/`, `public/`, `private/` are not mail.
MESSAGE_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt", "saved")
MESSAGE_LOGS = ("defer", "bounce", "trace")
# Inside the queue directory (same file system: a rename keeps the inode a short queue ID names),
# under a name Postfix never looks at.
QUEUE_ASIDE = "mailfix-lab-aside"


def free_ports(n: int) -> list[int]:
    """Return n distinct ports that were free on 127.0.0.1 a moment ago."""
    socks = []
    try:
        for _ in range(n):  # hold all sockets open so the kernel hands out distinct ports
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, what: str, timeout: float = 20.0) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {HOST}:{port} within {timeout}s") from None
            time.sleep(0.05)


def sh(
    *cmd: str, check: bool = True, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived command and capture its output."""
    return subprocess.run(
        cmd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def pid_in(pidfile: Path) -> int | None:
    """Return the pid named in pidfile if that process is alive."""
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def kill_and_wait(pidfile: Path, timeout: float = 15) -> None:
    """SIGTERM the process named in pidfile and wait until it is gone."""
    pid = pid_in(pidfile)
    if pid is None:
        return
    os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while pid_in(pidfile) == pid and time.monotonic() < deadline:
        time.sleep(0.05)


def queue_files(queue_dir: Path) -> set[Path]:
    """Return every queued message file and per-message log under queue_dir, relative to it."""
    found: set[Path] = set()
    for name in (*MESSAGE_QUEUES, *MESSAGE_LOGS):
        top = queue_dir / name
        if top.is_dir():
            found |= {path.relative_to(queue_dir) for path in top.rglob("*") if path.is_file()}
    return found


def move_keeping_tree(source: Path, target: Path) -> None:
    """Rename source to target, creating missing directories like their existing parent (owner, mode)."""
    missing = []
    parent = target.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    like = parent.stat()
    for directory in reversed(missing):
        directory.mkdir(mode=like.st_mode & 0o7777)
        os.chown(directory, like.st_uid, like.st_gid)
    os.rename(source, target)


def backup(path: Path) -> None:
    """Keep the machine's own version of a file the lab overwrites (once, before the first lab)."""
    saved = path.with_name(path.name + ".mailfix-lab-orig")
    if path.exists() and not saved.exists() and MARKER not in path.read_text():
        shutil.copy2(path, saved)


def daemon(log: Path, *cmd: str) -> None:
    """Run a command that leaves a daemon behind (`dovecot`, `postfix start`)."""
    # Never pipes: the daemon inherits them, and reading a pipe until EOF would hang forever.
    with log.open("a") as out:
        rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60).returncode
    if rc:
        raise RuntimeError(f"{' '.join(cmd)} exited {rc}: {log.read_text()[-2000:]}")


class Lab:
    """Start with `Lab().start()`, stop with `close()`; `reset()` between tests."""

    host = HOST
    domain = DOMAIN

    def __init__(self) -> None:
        self.passwords = {user: f"Lab-{user}-pw-7" for user in MAIL_USERS}
        self.sasl_access_map = SASL_ACCESS
        self._sshd: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None
        self.dir = Path()
        self.queue_dir = Path("/var/spool/postfix")  # read from Postfix when the lab starts
        self._owns_queue = False  # the machine's own queued mail is aside; the queue is the lab's
        self.queued_before: set[Path] = set()  # queue files (relative) found at start, given back at close
        self.started = False

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> Lab:
        """Start sshd, Dovecot and Postfix on fresh free ports; return self."""
        self._take_lock()
        self.dir = Path(tempfile.mkdtemp(prefix="mailfix-lab-"))
        self.dir.chmod(0o755)  # non-root users run the reboot script and read nothing secret here
        self.ssh_port, self.smtp_port, self.imap_port, self.pop3_port, self.closed_port = free_ports(5)
        self.postfix_log = self.dir / "postfix.log"
        self.dovecot_log = self.dir / "dovecot.log"
        self.sshd_log = self.dir / "sshd.log"
        self.started = True
        try:
            self._make_users()
            self._start_sshd()
            self._start_dovecot()
            self._start_postfix()
            self._write_reboot_script()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop what start() started; safe to call twice."""
        if not self.started:
            return
        self.started = False
        with contextlib.suppress(RuntimeError):
            self._wait_for_reboot()
        if self._postfix_running():
            sh("postfix", "stop", check=False)
        try:
            self._give_back_queue()
        except RuntimeError as exc:  # Postfix would not stop: the next lab's start cleans up after this one
            self._note(f"close: the queue was not given back: {exc}")
        # Stopped by pid: `doveadm stop` takes 3 s. local.conf stays: without it, a later
        # plain `dovecot` would listen on 0.0.0.0.
        kill_and_wait(DOVECOT_PID)
        self._stop_sshd()
        if os.environ.get("MAILFIX_LAB_KEEP") != "1":  # keep logs for a post-mortem on request
            shutil.rmtree(self.dir, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def _take_lock(self) -> None:
        # Another pytest session on this machine (another engineer, another worktree) may run
        # a lab: two labs would rewrite each other's Postfix/Dovecot config mid-test.
        timeout = float(os.environ.get("MAILFIX_LAB_LOCK_TIMEOUT", "1200"))
        deadline = time.monotonic() + timeout
        fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise RuntimeError(f"another mailfix lab held {LOCK} for {timeout:.0f}s") from None
                if not told:
                    holder = Path(LOCK).read_text().strip() or "?"
                    print(f"mailfix lab: waiting for the lab of {holder} to close ({LOCK})", flush=True)
                    told = True
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} cwd {os.getcwd()}\n".encode())
        self._lock = fd

    def _wait_for_reboot(self) -> None:
        deadline = time.monotonic() + 60
        while (self.dir / "rebooting").exists():  # a simulated reboot is still under way
            if time.monotonic() > deadline:
                raise RuntimeError("simulated reboot did not finish within 60s")
            time.sleep(0.2)

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- what tests use --------------------------------------------------------------------

    def server_config(self, user: str = "root", **overrides: object) -> ServerConfig:
        """Return a ServerConfig that points mailfix at this lab."""
        values: dict[str, object] = dict(
            name="lab",
            host=HOST,
            port=self.ssh_port,
            user=user,
            key_file=self.client_key,
            known_hosts=self.known_hosts,
            mail_domain=DOMAIN,
            postfix_log=str(self.postfix_log),
            sasl_access_map=SASL_ACCESS,
            password_backend="chpasswd",
            archive_dir=str(self.dir / "archives"),
            restart_command="postfix stop; postfix start",
            reboot_command=str(self.reboot_script),
            reboot_deadline_seconds=60,
            connect_timeout_seconds=5.0,
            command_timeout_seconds=60.0,
        )
        values.update(overrides)
        return ServerConfig(**values)  # type: ignore[arg-type]

    @property
    def smtpd_service(self) -> str:
        """Return the lab's smtpd as `postconf -P` names it (service/type)."""
        return f"{HOST}:{self.smtp_port}/inet"

    @contextlib.contextmanager
    def postfix_settings(self, *, main: dict[str, str], smtpd: dict[str, str]) -> Iterator[None]:
        """Set main.cf parameters and `-o` overrides of the lab's smtpd for the block, then put both files back."""
        saved = {path: path.read_text() for path in (MAIN_CF, MASTER_CF)}
        try:
            for name, value in main.items():
                sh("postconf", "-e", f"{name}={value}")
            for name, value in smtpd.items():
                sh("postconf", "-P", f"{self.smtpd_service}/{name}={value}")
            sh("postfix", "reload")
            yield
        finally:
            for path, text in saved.items():
                path.write_text(text)
            sh("postfix", "reload", check=False)

    def run(self, cmd: list[str], *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a local command (as root) and return its output."""
        return sh(*cmd, check=check, timeout=timeout)

    def maildir(self, user: str) -> Path:
        return Path(pwd.getpwnam(user).pw_dir) / "Maildir"

    def inbox_count(self, user: str) -> int:
        """Return how many messages are in the user's INBOX (Maildir new/ and cur/)."""
        box = self.maildir(user)
        return sum(1 for sub in ("new", "cur") if (box / sub).is_dir() for _ in (box / sub).iterdir())

    def reset(self) -> None:
        """Restore the initial state: services up, empty queue/map/mailboxes, known passwords."""
        self._wait_for_reboot()
        if pid_in(self.dir / "sshd.pid") is None:
            self._note("reset: sshd was not running, starting it")
            self._stop_sshd()
            self._start_sshd()
        if pid_in(DOVECOT_PID) is None:
            self._note("reset: dovecot was not running, starting it")
            self._start_dovecot()
        if not self._postfix_running():
            self._note("reset: postfix was not running, starting it")
            daemon(self.dir / "postfix-start.log", "postfix", "start")
        self._empty_queue()
        sh("chpasswd", input="".join(f"{u}:{p}\n" for u, p in self.passwords.items()))
        Path(SASL_ACCESS).write_text("")
        sh("postmap", SASL_ACCESS)
        for user in MAIL_USERS:
            sh("doveadm", "kick", user, check=False)  # exit 68 when nobody was logged in
            shutil.rmtree(self.maildir(user), ignore_errors=True)
            self._make_maildir(user)
        sh("doveadm", "auth", "cache", "flush")
        self.postfix_log.write_text("")  # postlogd appends (O_APPEND), so truncating is safe

    def _empty_queue(self, settle: float = 0.5, timeout: float = 15) -> None:
        """Delete every queued message, again until nothing more arrives for `settle` seconds.

        A previous test's mail can still be in flight (smtpd, cleanup) when it ends: deleted once,
        it would land in the next test's queue and its counts.
        """
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            sh("postsuper", "-d", "ALL")
            if sh("postqueue", "-j").stdout.strip():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the lab's queue did not stay empty within {timeout:.0f}s")

    def _note(self, message: str) -> None:
        with (self.dir / "lab.log").open("a") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    # ---- users and keys --------------------------------------------------------------------

    def _make_users(self) -> None:
        for user in (*MAIL_USERS, SUDO_USER, NOSUDO_USER):
            if sh("getent", "passwd", user, check=False).returncode:
                sh("useradd", "--create-home", "--shell", "/bin/bash", user)
        sh(
            "chpasswd",
            input="".join(f"{u}:{p}\n" for u, p in self.passwords.items()) + f"{NOSUDO_USER}:Lab-nosudo-pw-7\n",
        )
        # sshd with UsePAM=no refuses a locked ("!") account even for key logins; "*" = no password.
        sh("usermod", "-p", "*", SUDO_USER)
        for user in MAIL_USERS:
            self._make_maildir(user)
        tmp = SUDOERS.with_suffix(".tmp")
        tmp.write_text(f"Defaults:{SUDO_USER} !requiretty\n{SUDO_USER} ALL=(ALL) NOPASSWD: ALL\n")
        tmp.chmod(0o440)
        sh("visudo", "-cf", str(tmp))
        tmp.replace(SUDOERS)

        self.client_key = self._keygen("client_key")
        self.wrong_client_key = self._keygen("wrong_client_key")
        host_key = self._keygen("ssh_host_ed25519_key")
        other_host_key = self._keygen("other_host_key")
        self.known_hosts = self.dir / "known_hosts"
        self.wrong_known_hosts = self.dir / "wrong_known_hosts"
        for path, key in ((self.known_hosts, host_key), (self.wrong_known_hosts, other_host_key)):
            kind, blob = Path(f"{key}.pub").read_text().split()[:2]
            path.write_text(f"[{HOST}]:{self.ssh_port} {kind} {blob}\n")
        keys = self.dir / "authorized_keys"
        keys.mkdir()
        for user in ("root", SUDO_USER, NOSUDO_USER):
            shutil.copy(f"{self.client_key}.pub", keys / user)

    def _keygen(self, name: str) -> Path:
        path = self.dir / name
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"mailfix-lab-{name}", "-f", str(path))
        return path

    def _make_maildir(self, user: str) -> None:
        entry = pwd.getpwnam(user)
        box = self.maildir(user)
        for path in (box, box / "new", box / "cur", box / "tmp"):
            path.mkdir(mode=0o700, exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    # ---- sshd ------------------------------------------------------------------------------

    def _start_sshd(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation dir
        self.sshd_config = self.dir / "sshd_config"
        self.sshd_config.write_text(conf.sshd_config(dir=self.dir, ssh_port=self.ssh_port))
        sh("/usr/sbin/sshd", "-t", "-f", str(self.sshd_config))
        self._sshd = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-f", str(self.sshd_config), "-E", str(self.sshd_log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port(self.ssh_port, "sshd")

    def _stop_sshd(self) -> None:
        # The simulated reboot replaces our Popen child with a daemonized sshd: the pid file
        # names whichever is current. Only the listener dies; open sessions end on their own.
        kill_and_wait(self.dir / "sshd.pid")
        if self._sshd is not None:
            if self._sshd.poll() is None:
                self._sshd.terminate()
            self._sshd.wait(timeout=10)
            self._sshd = None
        (self.dir / "sshd.pid").unlink(missing_ok=True)

    # ---- Dovecot ---------------------------------------------------------------------------

    def _start_dovecot(self) -> None:
        # Debian's 10-ssl.conf reads a certificate the package never created (`ssl_cert = <...`
        # is read while parsing, even with ssl = no later), so dovecot would not start.
        text = DOVECOT_SSL.read_text()
        patched = text.replace("\nssl_cert = <", "\n#ssl_cert = <").replace("\nssl_key = <", "\n#ssl_key = <")
        if patched != text:
            DOVECOT_SSL.write_text(patched.replace("\nssl = yes", "\nssl = no"))
        # local.conf (not our own -c file) so that a plain `doveadm ...` over SSH sees the lab.
        DOVECOT_LOCAL.write_text(
            conf.dovecot_local_conf(imap_port=self.imap_port, pop3_port=self.pop3_port, log=self.dovecot_log)
        )
        kill_and_wait(DOVECOT_PID)  # a running instance would keep its old ports
        daemon(self.dir / "dovecot-start.log", "dovecot")  # daemonizes; reads /etc/dovecot/dovecot.conf (+ local.conf)
        wait_port(self.imap_port, "dovecot imap")
        wait_port(self.pop3_port, "dovecot pop3")

    # ---- Postfix ---------------------------------------------------------------------------

    def _postfix_running(self) -> bool:
        return sh("postfix", "status", check=False).returncode == 0

    def _start_postfix(self) -> None:
        backup(MAIN_CF)
        MAIN_CF.write_text(conf.postfix_main_cf(dir=self.dir, log=self.postfix_log, closed_port=self.closed_port))
        # Written whole: `postconf -M/-F` edits move comment lines around between services.
        backup(MASTER_CF)
        MASTER_CF.write_text(conf.postfix_master_cf(smtp_port=self.smtp_port))
        if not Path(SASL_ACCESS).exists():
            Path(SASL_ACCESS).write_text("")
        sh("postmap", SASL_ACCESS)
        sh("newaliases")
        if self._postfix_running():
            sh("postfix", "stop")  # a stale instance would keep its old ports
        self.queue_dir = Path(sh("postconf", "-h", "queue_directory").stdout.strip())
        self._take_queue()
        sh("postfix", "check")
        daemon(self.dir / "postfix-start.log", "postfix", "start")
        wait_port(self.smtp_port, "postfix smtpd")

    def _wait_postfix_gone(self, timeout: float = 15) -> None:
        """Return once no Postfix daemon runs (they outlive `postfix stop` for a moment)."""
        daemons = sh("postconf", "-h", "daemon_directory").stdout.strip() + "/"
        deadline = time.monotonic() + timeout
        while True:
            alive = []
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    with contextlib.suppress(OSError):
                        if os.readlink(proc / "exe").startswith(daemons):
                            alive.append(proc.name)
            if not alive:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Postfix processes {', '.join(alive)} still run {timeout:.0f}s after a stop")
            time.sleep(0.05)

    def _delete_queued_mail(self) -> None:
        """Delete every message in the queue, and any file a message left there (Postfix is stopped)."""
        sh("postsuper", "-d", "ALL", check=False)  # messages and their logs, the queue manager's way
        for stale in queue_files(self.queue_dir):  # maildrop, corrupt, saved, logs of gone messages
            (self.queue_dir / stale).unlink(missing_ok=True)

    def _take_queue(self) -> None:
        """Move the mail queued before the lab aside, so that the lab's tests see (and delete) only their own."""
        self._wait_postfix_gone()
        aside = self.queue_dir / QUEUE_ASIDE
        if aside.exists():
            # A lab that never closed set the machine's mail aside: what is queued now is that lab's.
            self._note(f"start: {aside} left by a lab that did not close; deleting that lab's mail")
            self._delete_queued_mail()
            self.queued_before = {path.relative_to(aside) for path in aside.rglob("*") if path.is_file()}
        else:
            aside.mkdir(mode=0o700)
            self.queued_before = queue_files(self.queue_dir)
            moved: list[Path] = []
            try:
                for path in sorted(self.queued_before):
                    move_keeping_tree(self.queue_dir / path, aside / path)
                    moved.append(path)
            except BaseException:
                for path in moved:  # all or nothing: the machine's mail is never half aside
                    os.rename(aside / path, self.queue_dir / path)
                shutil.rmtree(aside)
                raise
        self._owns_queue = True

    def _give_back_queue(self) -> None:
        """Delete every message the lab's tests queued, then put the mail found at start back in place."""
        if not self._owns_queue:
            return
        self._wait_postfix_gone()
        self._delete_queued_mail()
        aside = self.queue_dir / QUEUE_ASIDE
        for path in sorted(path for path in aside.rglob("*") if path.is_file()):
            move_keeping_tree(path, self.queue_dir / path.relative_to(aside))
        shutil.rmtree(aside)
        self._owns_queue = False

    def _write_reboot_script(self) -> None:
        self.reboot_script = self.dir / "fake-reboot"
        self.reboot_script.write_text(
            conf.reboot_script(dir=self.dir, sshd_config=self.sshd_config, sshd_log=self.sshd_log)
        )
        self.reboot_script.chmod(0o755)
