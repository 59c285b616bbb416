"""The text of every config file the lab writes (see lab.py), one function per file."""

from __future__ import annotations

from pathlib import Path

HOST = "127.0.0.1"
DOMAIN = "lab.test"
SUDO_USER = "mailfixop"  # NOPASSWD sudo
NOSUDO_USER = "nosudo"  # sudo asks for a password
SASL_ACCESS = "/etc/postfix/sasl_access"
DOVECOT_PID = Path("/run/dovecot/master.pid")
MARKER = "# --- written by the mailfix lab (tests/integration/lab.py) on every start ---"
# name|type|private|unpriv|chroot|wakeup|maxproc|command: Debian's master.cf, chroot off.
MASTER_SERVICES = (
    "pickup|unix|n|-|n|60|1|pickup",
    "cleanup|unix|n|-|n|-|0|cleanup",
    "qmgr|unix|n|-|n|300|1|qmgr",
    "tlsmgr|unix|-|-|n|1000?|1|tlsmgr",
    "rewrite|unix|-|-|n|-|-|trivial-rewrite",
    "bounce|unix|-|-|n|-|0|bounce",
    "defer|unix|-|-|n|-|0|bounce",
    "trace|unix|-|-|n|-|0|bounce",
    "verify|unix|-|-|n|-|1|verify",
    "flush|unix|n|-|n|1000?|0|flush",
    "proxymap|unix|-|-|n|-|-|proxymap",
    "proxywrite|unix|-|-|n|-|1|proxymap",
    "smtp|unix|-|-|n|-|-|smtp",
    "relay|unix|-|-|n|-|-|smtp",
    "showq|unix|n|-|n|-|-|showq",
    "error|unix|-|-|n|-|-|error",
    "retry|unix|-|-|n|-|-|error",
    "discard|unix|-|-|n|-|-|discard",
    "local|unix|-|n|n|-|-|local",
    "virtual|unix|-|n|n|-|-|virtual",
    "lmtp|unix|-|-|n|-|-|lmtp",
    "anvil|unix|-|-|n|-|1|anvil",
    "scache|unix|-|-|n|-|1|scache",
    "postlog|unix-dgram|n|-|n|-|1|postlogd",
)


def sshd_config(*, dir: Path, ssh_port: int) -> str:
    return f"""\
ListenAddress {HOST}
Port {ssh_port}
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys/%u
# The keys live under /tmp, which is world-writable: StrictModes would reject them.
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers root {SUDO_USER} {NOSUDO_USER}
MaxStartups 50:30:100
MaxSessions 50
LogLevel VERBOSE
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def dovecot_local_conf(*, imap_port: int, pop3_port: int, log: Path) -> str:
    # Merged over Debian's conf.d: every inet listener is named, so none stays on 0.0.0.0.
    return f"""\
{MARKER}
listen = {HOST}
protocols = imap pop3
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
log_path = {log}
auth_verbose = yes
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {HOST}
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service auth {{
  unix_listener /var/spool/postfix/private/auth {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""


def postfix_main_cf(*, dir: Path, log: Path, closed_port: int) -> str:
    return f"""\
{MARKER}
compatibility_level = 3.6
myhostname = mail.{DOMAIN}
mydomain = {DOMAIN}
myorigin = $mydomain
mydestination = {DOMAIN}, localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
# Unauthenticated loopback clients may still send (the flood's bounces use this).
mynetworks = 127.0.0.0/8
# Outbound mail goes to a closed port: it stays in the deferred queue, never leaves.
relayhost = [{HOST}]:{closed_port}
smtp_dns_support_level = disabled
smtp_host_lookup = native
# Local mail (bounces to the victim, mail between users) stays queued too.
defer_transports = local
home_mailbox = Maildir/
alias_maps = hash:/etc/aliases
alias_database = hash:/etc/aliases
maillog_file = {log}
maillog_file_prefixes = /var, /dev/stdout, {dir}
enable_long_queue_ids = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_security_options = noanonymous
smtpd_tls_security_level = none
smtp_tls_security_level = none
# Empty relay restrictions: everything is decided in one list, blocked logins first.
smtpd_relay_restrictions =
smtpd_recipient_restrictions = check_sasl_access hash:{SASL_ACCESS}, permit_sasl_authenticated,
    permit_mynetworks, reject_unauth_destination
# The flood arrives faster than qmgr drains it; do not throttle the injecting clients.
in_flow_delay = 0
biff = no
append_dot_mydomain = no
readme_directory = no
"""


def postfix_master_cf(*, smtp_port: int) -> str:
    # Debian's services minus the smtpd on port 25, without chroot (it would need copies of
    # /etc files), plus our smtpd on the free port, logging like a real submission service.
    services = "\n".join(" ".join(line.split("|")) for line in MASTER_SERVICES)
    return f"""\
{MARKER}
{services}
{HOST}:{smtp_port} inet n - n - - smtpd
  -o smtpd_sasl_auth_enable=yes
  -o syslog_name=postfix/submission
"""


def reboot_script(*, dir: Path, sshd_config: Path, sshd_log: Path) -> str:
    # What `reboot` looks like from outside, minus the danger: the command returns at once,
    # then SSH, Dovecot and Postfix go away for a few seconds and come back.
    d = dir
    return f"""\
#!/bin/sh
touch {d}/rebooting
setsid sh -c '
  sleep 1
  postfix stop
  kill "$(cat {DOVECOT_PID})" "$(cat {d}/sshd.pid)"
  sleep 3
  /usr/sbin/sshd -f {sshd_config} -E {sshd_log}
  dovecot
  postfix start
  rm -f {d}/rebooting
' </dev/null >>{d}/fake-reboot.log 2>&1 &
echo "The system is going down for reboot NOW! (mailfix lab simulation)"
"""
