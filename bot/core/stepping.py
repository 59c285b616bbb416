"""Runs a state's entry steps: each recorded as started (with a lease) before it runs and as done or
failed after; a step found started by a worker that died is re-checked against the server, never
blindly run twice.
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
# started step as crashed, and re-checks it, only once the lease has run out.
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
        failed: Callable[[Incident, steps.Step, MailfixError], None],
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
            ctx = self._context(incident)
            runs = [r for r in incident.steps if r.phase == incident.phase and r.step == step.name]
            if any(r.status in steps.FINISHED for r in runs):
                continue
            if not step.when(ctx):
                self._record_skipped(incident, step)
                continue
            started = [r for r in runs if r.status == steps.StepStatus.STARTED]
            if started and started[-1].lease_until is not None and started[-1].lease_until > self.now():
                return False  # another worker is running it right now
            if started and step.verify is not None and self._verified(ctx, step):
                self.repo.finish_step(
                    step_id=started[-1].id,
                    status=steps.StepStatus.DONE,
                    now=self.now(),
                    summary={"verified": "already applied; not run again"},
                )
                continue
            if self._attempt(ctx, step, attempt=len(runs) + 1) is None:
                return False
        return True

    def _attempt(self, ctx: steps.StepContext, step: steps.Step, *, attempt: int) -> steps.StepOutcome | None:
        incident = ctx.incident
        try:
            run = self.repo.start_step(
                incident_id=incident.id,
                phase=incident.phase,
                step=step.name,
                attempt=attempt,
                actor=steps.SYSTEM_ACTOR,
                now=self.now(),
                owner=self.owner,
                lease_until=self.now() + LEASE,
            )
        except DuplicateStep:
            return None
        began = self.now()
        try:
            with self._heartbeat(run.id):
                outcome = step.run(ctx)
        except MailfixError as exc:
            self.repo.finish_step(
                step_id=run.id, status=steps.StepStatus.FAILED, summary={"error": str(exc)}, now=self.now()
            )
            self._failed(incident, step, exc)
            return None
        seconds = (self.now() - began).total_seconds()
        self.repo.finish_step(
            step_id=run.id,
            status=steps.StepStatus.DONE,
            now=self.now(),
            summary={**outcome.summary, "seconds": round(seconds, 3)},
        )
        if outcome.text:
            self._log_step(incident, f"{outcome.text} ({seconds:.1f}s)")
        return outcome

    @contextmanager
    def _heartbeat(self, step_id: int) -> Iterator[None]:
        """Renew the step's lease while it runs, so other workers leave it alone."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(LEASE.total_seconds() / 3):
                try:
                    self.repo.renew_lease(step_id=step_id, until=self.now() + LEASE)
                except Exception:  # a missed renewal only risks a needless re-check elsewhere
                    log.exception("could not renew the lease of step run %s", step_id)

        thread = threading.Thread(target=renew, name=f"mailfix-lease-{step_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    @staticmethod
    def _verified(ctx: steps.StepContext, step: steps.Step) -> bool:
        assert step.verify is not None
        try:
            return step.verify(ctx)
        except MailfixError:
            return False

    def _record_skipped(self, incident: Incident, step: steps.Step) -> None:
        try:
            run = self.repo.start_step(
                incident_id=incident.id,
                phase=incident.phase,
                step=step.name,
                attempt=1,
                actor=steps.SYSTEM_ACTOR,
                now=self.now(),
            )
        except DuplicateStep:
            return
        self.repo.finish_step(step_id=run.id, status=steps.StepStatus.SKIPPED, summary={}, now=self.now())

    def steps_pending(self, incident: Incident) -> bool:
        """True while the incident's state has entry steps not yet done or skipped in this phase."""
        finished = {r.step for r in incident.steps if r.phase == incident.phase and r.status in steps.FINISHED}
        return any(step.name not in finished for step in STAGES[State(incident.state)].steps)
