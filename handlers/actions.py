"""The buttons and the select of the incident message, the DM's "I have saved my new password", and the
flood alert's "Start incident"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App

from bot.core.runbook import Event, Runbook
from handlers import blocks, password_blocks
from handlers.ids import ActionId
from handlers.replies import tell, user_of

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from handlers.app import Worker


def incident_id(body: dict) -> int:
    """Return the incident id a button carries in its value."""
    return int(body["actions"][0]["value"])


def picked(body: dict) -> tuple[int, str]:
    """Return the incident id and the account chosen in the "pick another account" select."""
    return picked_value(body["actions"][0]["selected_option"]["value"])


def picked_value(value: str) -> tuple[int, str]:
    """Split an "<incident id>:<account>" value."""
    number, _, account = value.partition(":")
    return int(number), account


def handle_approve_cleanup_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    worker.run(body, runbook.fire, incident_id(body), Event.APPROVE, actor=user_of(body))


def handle_not_this_account_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    worker.run(body, runbook.reject, incident_id(body), actor=user_of(body))


def handle_pick_account_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    number, account = picked(body)
    worker.run(body, runbook.reject, number, actor=user_of(body), pick=account)


def handle_approve_reboot_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    worker.run(body, runbook.fire, incident_id(body), Event.APPROVE_REBOOT, actor=user_of(body))


def handle_renew_approval_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    worker.run(body, runbook.fire, incident_id(body), Event.RENEW, actor=user_of(body))


def handle_retry_step_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    worker.run(body, runbook.retry, incident_id(body), actor=user_of(body))


def handle_resolve_now_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    worker.run(body, runbook.resolve_now, incident_id(body), actor=user_of(body))


def handle_abort_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    worker.run(body, runbook.abort, incident_id(body), actor=user_of(body))


def handle_contain_account_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    number, account = account_value(body)
    worker.run(body, runbook.contain, number, actor=user_of(body), account=account)


def account_value(body: dict) -> tuple[int, str]:
    """Return the incident id and the account a "Contain <account> too" button carries ("<id>:<account>")."""
    number, _, account = body["actions"][0]["value"].partition(":")
    return int(number), account


def handle_start_incident_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    worker.run(body, _start_from_alert, runbook, body, worker.client)


def _start_from_alert(runbook: Runbook, body: dict, client: WebClient) -> None:
    # The clicker hears back like after `/mailfix start`; the watch's next poll takes the button away.
    incident = runbook.start(server=body["actions"][0]["value"], actor=user_of(body))
    tell(body, client, blocks.started_message(incident, runbook.config.channel))


def handle_confirm_password_action(ack: Ack, body: dict, runbook: Runbook, worker: Worker) -> None:
    ack()
    worker.run(body, _confirm_password, runbook, body, worker.client)


def _confirm_password(runbook: Runbook, body: dict, client: WebClient) -> None:
    # The runbook erases the password and rewrites the DM; an operator's ephemeral note has no
    # message to rewrite, so it is replaced through its response_url.
    number, account = picked_value(body["actions"][0]["value"])
    erased = runbook.confirm_password(number, actor=user_of(body), account=account or None)
    if (body.get("container") or {}).get("is_ephemeral"):
        tell(body, client, password_blocks.password_erased_note(), replace=True)
    elif not erased:
        tell(body, client, blocks.error_message("The new password was already erased from mailfix."))


HANDLERS: dict[ActionId, Any] = {
    ActionId.APPROVE_CLEANUP: handle_approve_cleanup_action,
    ActionId.NOT_THIS_ACCOUNT: handle_not_this_account_action,
    ActionId.PICK_ACCOUNT: handle_pick_account_action,
    ActionId.APPROVE_REBOOT: handle_approve_reboot_action,
    ActionId.RENEW_APPROVAL: handle_renew_approval_action,
    ActionId.RETRY_STEP: handle_retry_step_action,
    ActionId.RESOLVE_NOW: handle_resolve_now_action,
    ActionId.ABORT: handle_abort_action,
    ActionId.CONFIRM_PASSWORD: handle_confirm_password_action,
    ActionId.CONTAIN_ACCOUNT: handle_contain_account_action,
    ActionId.START_INCIDENT: handle_start_incident_action,
}


def register(app: App) -> None:
    for action_id, handler in HANDLERS.items():
        app.action(str(action_id))(handler)
