"""Runs a state's entry steps: each recorded as started (with a lease) before it runs and as done or
failed after; a step found started by a worker that died, or failed (a connection cut half way), is
re-checked against the server by its `verify` before it runs again, never blindly run twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from bot.core import steps
from bot.core.table import STAGES, State
from bot.errors import MailfixError
from storage.models import Incident
from storage.repository import DuplicateStep, Repository

log = logging.getLogger(__name__)
# A running step's worker renews its lease every LEASE/3; another worker (process, replica) treats a
# started step as crashed, and re-checks it, only once the lease has run out on the database's clock
# (hosts' clocks may disagree; the database's is the one they share).
LEASE = timedelta(seconds=15)


class StepRunner:
    """Runs the pending entry steps of an incident's state, one worker at a time across processes."""

    def __init__(
        self,
        *,
        repository: Repository,
        owner: str,
        now: Callable[[], datetime],
        get: Callable[[int], Incident],
        context: Callable[[Incident], steps.StepContext],
        failed: Callable[[Incident, steps.Step, int, MailfixError], None],
        log_step: Callable[[Incident, str], None],
    ) -> None:
        self.repo, self.owner, self.now = repository, owner, now
        self._get, self._context, self._failed, self._log_step = get, context, failed, log_step

    def run_entry(self, incident: Incident) -> bool:
        """Run the entry steps not yet done in this phase; return True when all of them are done."""
        state = State(incident.state)
        for step in STAGES[state].steps:
            incident = self._get(incident.id)
            if incident.state != state:
                return False
            runs = [r for r in incident.steps if r.phase == incident.phase and r.step == step.name]
            if any(r.status in steps.FINISHED for r in runs):
                continue
            last = runs[-1] if runs else None
            if last is not None and last.status == steps.StepStatus.STARTED:
                # Started by a worker that may still run it: taken over only once its lease ran out.
                if not self.repo.claim_step(
                    step_id=last.id, owner=self.owner, lease=LEASE, at_version=incident.version
                ):
                    return False
                run_id = last.id
            else:
                try:
                    run_id = self.repo.start_step(
                        incident_id=incident.id,
                        phase=incident.phase,
                        step=step.name,
                        attempt=len(runs) + 1,
                        actor=steps.SYSTEM_ACTOR,
                        now=self.now(),
                        owner=self.owner,
                        lease=LEASE,
                        at_version=incident.version,  # what this snapshot showed is still the truth
                    ).id
                except DuplicateStep:
                    return False
            # An earlier attempt that died or failed may have been cut half way: re-check it first.
            if not self._attempt(incident, step, run_id, recheck=last is not None):
                return False
        return True

    def _attempt(self, incident: Incident, step: steps.Step, run_id: int, *, recheck: bool) -> bool:
        began = self.now()
        try:
            with self._heartbeat(run_id):
                # Connecting is part of the step: an unreachable server fails it like any command.
                ctx = self._context(incident)
                ctx.recheck = recheck
                ctx.note = lambda **fields: self.repo.note_step(step_id=run_id, summary=fields)
                if not step.when(ctx):
                    self.repo.finish_step(step_id=run_id, status=steps.StepStatus.SKIPPED, summary={}, now=self.now())
                    return True
                if recheck and step.verify is not None and step.verify(ctx):
                    summary = {"verified": "already applied; not run again"}
                    self.repo.finish_step(step_id=run_id, status=steps.StepStatus.DONE, now=self.now(), summary=summary)
                    return True
                outcome = step.run(ctx)
        except MailfixError as exc:
            self._failed(incident, step, run_id, exc)  # ends the attempt and the state together
            return False
        seconds = (self.now() - began).total_seconds()
        self.repo.finish_step(
            step_id=run_id,
            status=steps.StepStatus.DONE,
            now=self.now(),
            summary={**outcome.summary, "seconds": round(seconds, 3)},
        )
        if outcome.text:
            self._log_step(incident, f"{outcome.text} ({seconds:.1f}s)")
        return True

    @contextmanager
    def _heartbeat(self, step_id: int) -> Iterator[None]:
        """Renew the step's lease while it runs, so other workers leave it alone."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(LEASE.total_seconds() / 3):
                try:
                    if not self.repo.renew_lease(step_id=step_id, owner=self.owner, lease=LEASE):
                        log.warning("step run %s was taken over by another worker", step_id)
                except Exception:  # a missed renewal only risks a needless re-check elsewhere
                    log.exception("could not renew the lease of step run %s", step_id)

        thread = threading.Thread(target=renew, name=f"mailfix-lease-{step_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def steps_pending(self, incident: Incident) -> bool:
        """True while the incident's state has entry steps not yet done or skipped in this phase."""
        finished = {r.step for r in incident.steps if r.phase == incident.phase and r.status in steps.FINISHED}
        return any(step.name not in finished for step in STAGES[State(incident.state)].steps)
