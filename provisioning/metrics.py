"""Job and step metrics for Prometheus, read from the database at scrape time.

The database is the truth for jobs, and workers run on other machines than the
web processes, so these are not per-process counters: each scrape reports the
current counts and, per step, the runs and total duration of the last 30 days.
"""
from __future__ import annotations

from django.db import connection
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

from provisioning.models import ProvisioningJob, StepRun
from provisioning.selectors import STATS_WINDOW


class ProvisioningCollector:
    def collect(self):
        jobs = GaugeMetricFamily("matih_provisioning_jobs", "Jobs by status, kind (the operation) and tier",
                                 labels=["status", "kind", "tier"])
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT status, kind, tier, count(*) FROM {ProvisioningJob._meta.db_table} GROUP BY 1, 2, 3")
            for status, kind, tier, count in cursor.fetchall():
                jobs.add_metric([status, kind, tier], count)
            cursor.execute(
                f"SELECT name, status, count(*), coalesce(sum(attempts), 0), coalesce(sum(duration_ms), 0) "
                f"FROM {StepRun._meta.db_table} WHERE finished_at >= %s GROUP BY 1, 2",
                [timezone.now() - STATS_WINDOW],
            )
            rows = cursor.fetchall()
        yield jobs
        attempts = CounterMetricFamily("matih_provisioning_step_attempts",
                                       "Attempts of steps that finished in the last 30 days",
                                       labels=["step", "status"])
        durations = SummaryMetricFamily("matih_provisioning_step_duration_seconds",
                                        "Duration of the last run of steps finished in the last 30 days",
                                        labels=["step", "status"])
        for name, status, count, total_attempts, total_ms in rows:
            attempts.add_metric([name, status], total_attempts)
            durations.add_metric([name, status], count_value=count, sum_value=total_ms / 1000)
        yield attempts
        yield durations


_registry = CollectorRegistry(auto_describe=False)
_registry.register(ProvisioningCollector())


def job_metrics_text() -> bytes:
    return generate_latest(_registry)
