"""No-op tasks for the bare-Celery baselines of bench/pipeline.py.

Loaded only by the benchmark's worker (`celery -A matih worker --include bench.celery_baseline`).
"""
import time

from matih.celery import app


@app.task(name="bench.noop", ignore_result=True)
def noop(*args) -> None:
    return None


@app.task(name="bench.finish", ignore_result=False)
def finish(*args) -> float:
    """The chain's last task: when it ran (the same clock as the benchmark)."""
    return time.time()
