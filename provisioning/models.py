from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from billing.models import Tier


class JobStatus(models.TextChoices):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    ROLLING_BACK = "ROLLING_BACK"
    CANCELLING = "CANCELLING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_JOB_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class StepStatus(models.TextChoices):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    COMPENSATING = "COMPENSATING"
    COMPENSATED = "COMPENSATED"
    COMPENSATION_FAILED = "COMPENSATION_FAILED"


class JobKind(models.TextChoices):
    """The operation a job performs; each kind has its plans (provisioning.engine.plan_table)."""

    PROVISION = "PROVISION"
    CHANGE_TIER = "CHANGE_TIER"
    SUSPEND = "SUSPEND"
    ACTIVATE = "ACTIVATE"
    DEPROVISION = "DEPROVISION"


class ProvisioningJob(models.Model):
    """One operation on a tenant, run by the engine: provisioning (the seed's
    TenantProvisioningJob), a tier change, a suspension, an activation or a deprovisioning."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by job_tenant_recent (tenant, -created_at): no second index to maintain on every insert.
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="provisioning_jobs",
                               db_index=False)
    kind = models.CharField(max_length=16, choices=JobKind.choices, default=JobKind.PROVISION)
    # The tier the plan is for: the tenant's, or the target of a tier change (from_tier -> tier).
    tier = models.CharField(max_length=16, choices=Tier.choices)
    from_tier = models.CharField(max_length=16, choices=Tier.choices, null=True, blank=True)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.PENDING)
    initiated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    retry_count = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveIntegerField(default=3)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    # Key-value metadata: tenant slug, cluster name, fault injection, step outputs' summary.
    context = models.JSONField(default=dict, blank=True)
    # Who runs the job now, until when. A lapsed lease on a RUNNING job means its worker died.
    lease_owner = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Bumped by every transition; the compare-and-swap token of the job row.
    version = models.PositiveIntegerField(default=0)
    # The steps that have succeeded, in the order they did. Appended under the row's lock, so
    # of two parallel steps finishing at once exactly one sees a joint successor become ready.
    succeeded_steps = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant"],
                condition=~Q(status__in=["COMPLETED", "FAILED", "CANCELLED"]),
                name="one_open_job_per_tenant",
            )
        ]
        indexes = [
            # The sweeper's three questions, each answered by a small partial index.
            models.Index(fields=["next_retry_at"], name="job_due_retry",
                         condition=Q(status="RETRY_SCHEDULED")),
            models.Index(fields=["lease_expires_at"], name="job_lease",
                         condition=Q(status__in=["RUNNING", "ROLLING_BACK", "CANCELLING"])),
            models.Index(fields=["created_at"], name="job_pending", condition=Q(status="PENDING")),
            models.Index(fields=["tenant", "-created_at"], name="job_tenant_recent"),
            models.Index(fields=["status", "tier"], name="job_status_tier"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    @property
    def to_tier(self) -> str | None:
        return self.tier if self.kind == JobKind.CHANGE_TIER else None

    @property
    def plan(self):
        from provisioning.engine.plans import plan_of_job

        return plan_of_job(self)


class StepRun(models.Model):
    """One step of a job's plan: its status, attempts, outputs (for rollback) and error."""

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(ProvisioningJob, on_delete=models.CASCADE, related_name="steps",
                            db_index=False)  # step_unique_per_job (job, name) serves lookups by job
    name = models.CharField(max_length=64)
    phase = models.CharField(max_length=40)
    position = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=24, choices=StepStatus.choices, default=StepStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    compensation_attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # Time spent running over every attempt (progress credits a long step as it runs).
    elapsed_ms = models.PositiveIntegerField(default=0)
    # Set once the step has succeeded; kept through compensation (progress never goes back).
    succeeded_at = models.DateTimeField(null=True, blank=True)
    # The claim: which task runs it, until when. A lapsed lease means its worker died.
    claimed_by = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # The external ids the step created, recorded before the next step starts.
    outputs = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="step_unique_per_job")]
        # For the step statistics (the last 30 days). Not on status: a claim then stays a HOT update.
        indexes = [models.Index(fields=["finished_at"], name="step_finished")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class ProvisioningEvent(models.Model):
    """What happened to a job, in order (seq is per job)."""

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(ProvisioningJob, on_delete=models.CASCADE, related_name="events",
                            db_index=False)  # event_unique_seq (job, seq) serves lookups by job
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=40)
    step = models.CharField(max_length=64, blank=True, default="")
    message = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="event_unique_seq")]


class WebhookDelivery(models.Model):
    """One signed POST announcing a job's end, and what became of it."""

    class Status(models.TextChoices):
        PENDING = "PENDING"
        DELIVERED = "DELIVERED"
        RETRYING = "RETRYING"
        GAVE_UP = "GAVE_UP"

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(ProvisioningJob, on_delete=models.CASCADE, related_name="webhook_deliveries")
    url = models.URLField(max_length=500)
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["next_attempt_at"], name="webhook_due",
                                condition=Q(status__in=["PENDING", "RETRYING"]))]


class TenantResource(models.Model):
    """The inventory: one resource a step made for a tenant, and whether it still exists.

    Recorded in the statement that commits the step's success (a step's outputs say what it
    created or found under "resources", what it removed under "removed"); marked removed
    when the step is undone. GET /tenants/{id}/resources lists what exists now. The leftover
    scan of a deprovisioning does not trust this table: it asks every system again.
    """

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="resources",
                               db_index=False)  # resource_alive (tenant, ...) serves lookups by tenant
    kind = models.CharField(max_length=40)
    name = models.CharField(max_length=255)
    location = models.CharField(max_length=255, blank=True, default="")
    job = models.ForeignKey(ProvisioningJob, on_delete=models.CASCADE, related_name="resources_made")
    step = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by_job = models.ForeignKey(ProvisioningJob, null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="resources_removed")
    removed_by_step = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # A resource exists once at a time: a step that finds it keeps the row of the one that made it.
            models.UniqueConstraint(fields=["tenant", "kind", "location", "name"], condition=Q(removed_at__isnull=True),
                                    name="resource_alive"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} @ {self.location}"
