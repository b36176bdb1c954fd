"""Telling people a job ended: an email to the tenant's admin and signed webhooks.

A webhook is a POST of JSON signed with HMAC-SHA256 over "{timestamp}.{body}":
    X-Matih-Timestamp: <unix seconds>
    X-Matih-Signature: sha256=<hex digest>
Each delivery is a row (WebhookDelivery); failures are retried with backoff
(MATIH_WEBHOOK_BACKOFF) up to WEBHOOK_MAX_ATTEMPTS and recorded; the sweeper
re-sends a delivery whose retry message was lost. Nothing here can fail or block a job.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F
from django.utils import timezone

from provisioning.models import JobStatus, ProvisioningJob, WebhookDelivery

log = logging.getLogger("matih.notifications")

WEBHOOK_MAX_ATTEMPTS = 6
WEBHOOK_TIMEOUT_SECONDS = 5.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def _webhook_targets(job: ProvisioningJob) -> list[tuple[str, str]]:
    """(url, secret) pairs: the tenant's own (settings.notifications.webhooks) and the platform's."""
    targets = []
    values = getattr(getattr(job.tenant, "settings", None), "values", {}) or {}
    for hook in (values.get("notifications") or {}).get("webhooks") or []:
        if isinstance(hook, dict) and isinstance(hook.get("url"), str):
            targets.append((hook["url"], str(hook.get("secret", ""))))
        elif isinstance(hook, str):
            targets.append((hook, ""))
    targets += [(url, settings.MATIH_WEBHOOK_SECRET) for url in settings.MATIH_WEBHOOK_URLS]
    return targets


def _payload(job: ProvisioningJob) -> dict:
    return {
        "event": f"provisioning.{job.status.lower()}",
        "tenantId": str(job.tenant_id), "slug": job.tenant.slug, "tier": job.tier, "jobId": str(job.id),
        "jobStatus": job.status, "tenantStatus": job.tenant.status,
        "completedAt": job.completed_at.isoformat() if job.completed_at else None,
        "errorMessage": job.error_message or None,
    }


def notify_job_finished(job_id) -> None:
    from provisioning.tasks import deliver_webhook

    job = ProvisioningJob.objects.select_related("tenant", "tenant__settings").get(id=job_id)
    if job.status not in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
        return
    payload = _payload(job)
    values = getattr(getattr(job.tenant, "settings", None), "values", {}) or {}
    if (values.get("notifications") or {}).get("email", True):
        _send_email(job)
    for url, _secret in _webhook_targets(job):
        delivery, created = WebhookDelivery.objects.get_or_create(
            job=job, url=url, event=payload["event"], defaults={"payload": payload, "next_attempt_at": timezone.now()})
        if created:
            deliver_webhook.delay(delivery.id)


def _send_email(job: ProvisioningJob) -> None:
    tenant = job.tenant
    if job.status == JobStatus.COMPLETED:
        subject = f"Your MATIH tenant {tenant.slug} is ready"
        body = f"Tenant {tenant.name} ({tenant.slug}, {job.tier}) finished provisioning and is ACTIVE."
    else:
        subject = f"Provisioning of your MATIH tenant {tenant.slug} did not finish"
        body = f"Tenant {tenant.name} ({tenant.slug}) is {tenant.status}.\n\n{job.error_message}"
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [tenant.admin_email], fail_silently=False)
    except Exception:
        log.warning("notification email not sent", extra={"jobId": str(job.id)}, exc_info=True)


@dataclass
class DeliveryOutcome:
    status: str
    retry_in: float | None = None


def deliver_webhook(delivery_id: int) -> DeliveryOutcome:
    delivery = WebhookDelivery.objects.select_related("job").filter(id=delivery_id).first()
    if delivery is None or delivery.status in (WebhookDelivery.Status.DELIVERED, WebhookDelivery.Status.GAVE_UP):
        return DeliveryOutcome("done")
    secret = next((s for url, s in _webhook_targets(
        ProvisioningJob.objects.select_related("tenant", "tenant__settings").get(id=delivery.job_id))
        if url == delivery.url), "")
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": "matih-webhooks/1",
               "X-Matih-Event": delivery.event, "X-Matih-Delivery": str(delivery.id),
               "X-Matih-Timestamp": timestamp}
    if secret:
        headers["X-Matih-Signature"] = sign(secret, timestamp, body)
    code, error = None, ""
    try:
        response = httpx.post(delivery.url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT_SECONDS)
        code = response.status_code
        ok = 200 <= code < 300
        if not ok:
            error = f"HTTP {code}"
    except httpx.HTTPError as exc:
        ok, error = False, f"{type(exc).__name__}: {exc}"
    attempts = delivery.attempts + 1
    now = timezone.now()
    if ok:
        WebhookDelivery.objects.filter(id=delivery.id).update(
            status=WebhookDelivery.Status.DELIVERED, attempts=F("attempts") + 1, last_status_code=code,
            last_error="", delivered_at=now, next_attempt_at=None)
        return DeliveryOutcome("delivered")
    if attempts >= WEBHOOK_MAX_ATTEMPTS:
        WebhookDelivery.objects.filter(id=delivery.id).update(
            status=WebhookDelivery.Status.GAVE_UP, attempts=F("attempts") + 1, last_status_code=code,
            last_error=error, next_attempt_at=None)
        log.warning("webhook gave up", extra={"deliveryId": delivery.id, "attempts": attempts})
        return DeliveryOutcome("gave-up")
    delay = webhook_backoff(attempts)
    WebhookDelivery.objects.filter(id=delivery.id).update(
        status=WebhookDelivery.Status.RETRYING, attempts=F("attempts") + 1, last_status_code=code,
        last_error=error, next_attempt_at=now + timezone.timedelta(seconds=delay))
    return DeliveryOutcome("retrying", retry_in=delay)


def webhook_backoff(attempts: int) -> float:
    ladder = settings.MATIH_WEBHOOK_BACKOFF
    return float(ladder[min(attempts - 1, len(ladder) - 1)])
