"""The engine's canvases run in the test's own process: what would be sent to Celery is queued
and run here, phase task after phase task, exactly as a worker follows a chain (a delivery that
ends its chain ends it here too). For tests of the steps and drivers on the real backend; the
data-plane tests cover the Celery transport with real worker processes."""
from __future__ import annotations

from collections import deque


class LocalCanvas:
    def __init__(self, monkeypatch):
        self.queue: deque = deque()
        self.sent: list[tuple[str, str, list[str]]] = []

        def send_phases(job_id, plan, from_phase=None):
            start = plan.phases.index(from_phase) if from_phase else 0
            self._send("run", job_id, list(plan.phases[start:]))

        def send_rollback(job_id, phases, countdown=None):
            self._send("undo", job_id, list(phases))

        monkeypatch.setattr("provisioning.engine.canvas.send_phases", send_phases)
        monkeypatch.setattr("provisioning.engine.resume.send_phases", send_phases)
        monkeypatch.setattr("provisioning.engine.rollback.send_rollback", send_rollback)

    def _send(self, kind: str, job_id, phases: list[str]) -> None:
        self.sent.append((kind, str(job_id), phases))
        self.queue.append((kind, str(job_id), phases))

    def run(self, limit: int = 200) -> list[tuple[str, str, str]]:
        """Run what was sent until nothing is left; (kind, phase, outcome) of every task run."""
        from provisioning.engine.rollback import compensate_phase
        from provisioning.engine.runner import run_phase

        ran = []
        while self.queue:
            kind, job_id, phases = self.queue.popleft()
            for phase in phases:
                result = (run_phase if kind == "run" else compensate_phase)(job_id, phase)
                ran.append((kind, phase, result.outcome))
                if len(ran) > limit:
                    raise AssertionError(f"the canvas did not settle: {ran[-10:]}")
                if not result.go_on:
                    break
        return ran
