"""The identifiers Slack sends back to us: the slash command, action_ids and block_ids."""

from __future__ import annotations

from enum import StrEnum

COMMAND = "/mailfix"  # the one slash command; app.yaml must declare exactly the handled commands
COMMANDS = (COMMAND,)


class ActionId(StrEnum):
    """What a button or select does; each carries the incident id in its value."""

    APPROVE_CLEANUP = "approve_cleanup"
    NOT_THIS_ACCOUNT = "not_this_account"
    PICK_ACCOUNT = "pick_account"
    APPROVE_REBOOT = "approve_reboot"
    RENEW_APPROVAL = "renew_approval"
    RETRY_STEP = "retry_step"
    RESOLVE_NOW = "resolve_now"
    ABORT = "abort"
    CONFIRM_PASSWORD = "confirm_password"
    START_INCIDENT = "start_incident"  # on a flood alert; the value is the server's name
    CONTAIN_ACCOUNT = "contain_account"  # on a monitored incident; the value carries the account to contain
    RESTORE_INBOX = "restore_inbox"  # on a closed incident whose cleanup archived the INBOX


class BlockId(StrEnum):
    """Where a block sits in our messages (tests and updates find blocks by these)."""

    HEADER = "incident_header"
    FACTS = "incident_facts"
    SUSPECT = "incident_suspect"
    APPROVALS = "incident_approvals"
    FAILURE = "incident_failure"
    PROGRESS = "incident_progress"
    ACTIONS = "incident_actions"
    PASSWORD = "password"
    PASSWORD_ACTIONS = "password_actions"
    ALERT_HEADER = "alert_header"
    ALERT_FACTS = "alert_facts"
    ALERT_ACTIONS = "alert_actions"
