#!/usr/bin/env bash
# Install the Debian packages the integration-test lab needs (tests/integration/lab.py).
# Idempotent, non-interactive, safe as root in CI. Starts no daemon: the lab starts
# its own sshd/Postfix/Dovecot on 127.0.0.1 with free ports.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install-lab.sh: run as root (sudo bash .ci/install-lab.sh)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
PACKAGES=(postfix dovecot-core dovecot-imapd dovecot-pop3d openssh-server openssh-client sudo passwd)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    # Postfix's debconf would otherwise ask; "No configuration" leaves main.cf to the lab.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    echo "postfix postfix/mailname string mail.lab.test" | debconf-set-selections

    # Keep invoke-rc.d from starting any daemon (they would listen on 0.0.0.0:25/22/143...).
    created_policy=no
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=yes
    fi
    trap 'if [ "$created_policy" = yes ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT

    # apt-get update only when the package lists are missing (fresh container).
    if ! apt-cache show postfix >/dev/null 2>&1; then
        apt-get update -q
    fi
    apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" </dev/null
fi

# sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd
chmod 755 /run/sshd
echo "install-lab.sh: lab packages ready: ${PACKAGES[*]}"
