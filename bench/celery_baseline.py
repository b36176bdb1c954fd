"""The bare-Celery baselines of bench/pipeline.py: what a user would write without this product.

A stock Celery app, configured as Celery's Django guide shows (`config_from_object(
"django.conf:settings", namespace="CELERY")`), on kombu's own Redis transport (not
matih.broker's), with no-op tasks on a queue of their own, run by a worker of their own
(`celery -A bench.celery_baseline worker -Q bench-bare`) with as many processes as the
product's. Same broker, same machine, nothing of the product's tuning.
"""
import os
import time

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matih.settings")

QUEUE = "bench-bare"

# Not the current app: the product's shared tasks, sent from the benchmark's own process, stay on
# the product's app (matih.celery).
app = Celery("bare", set_as_current=False)
app.config_from_object("django.conf:settings", namespace="CELERY")
# The product's settings name its own transport (matih/broker.py); the baseline is kombu's.
app.conf.update(broker_transport="redis", task_default_queue=QUEUE)


@app.task(name="bench.noop", ignore_result=True)
def noop(*args) -> None:
    return None


@app.task(name="bench.finish", ignore_result=False)
def finish(*args) -> float:
    """The chain's last task: when it ran (the same clock as the benchmark)."""
    return time.time()
