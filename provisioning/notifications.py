"""Telling people a job ended: an email to the tenant's admin and signed webhooks.

A webhook is a POST of JSON signed with HMAC-SHA256 over "{timestamp}.{body}":
    X-Matih-Timestamp: <unix seconds>
    X-Matih-Signature: sha256=<hex digest>
Each delivery is a row (WebhookDelivery); any failure (an HTTP error, a refused
address, a URL that cannot be sent to) is a recorded attempt, retried with backoff
(MATIH_WEBHOOK_BACKOFF) up to WEBHOOK_MAX_ATTEMPTS, then GAVE_UP; the sweeper
re-sends a delivery whose retry message was lost. Nothing here can fail or block a job.

A tenant's webhook may not reach the platform's own network (server-side request
forgery): its URL is checked when it is registered (webhook_url_problem) and its
name is resolved and every address checked again when it is sent, and the request
goes to the address that was checked (a name can re-point between the two). Only
global unicast addresses are allowed unless MATIH_WEBHOOK_ALLOW_PRIVATE is set (tests,
on-premises installs). The platform's own webhooks (MATIH_WEBHOOK_URLS) are trusted.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F
from django.utils import timezone

from provisioning.models import JobKind, JobStatus, ProvisioningJob, WebhookDelivery

log = logging.getLogger("matih.notifications")

WEBHOOK_MAX_ATTEMPTS = 6
WEBHOOK_TIMEOUT_SECONDS = 5.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


# --- where a webhook may go --------------------------------------------------------------------------

MAX_WEBHOOK_URL = 500  # WebhookDelivery.url
_DNS_NAME = re.compile(r"^(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


class WebhookRefused(Exception):
    """A webhook URL that is not sent to: malformed, or an address on the platform's own network."""


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally, including the legacy IPv4 forms (2130706433, 127.1, 0x7f.1)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a webhook may not go to this address (None: a global unicast address)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            return address_problem(embedded)
    for kind in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return f"{address} is a {kind.replace('_', '-')} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def private_allowed() -> bool:
    return settings.MATIH_WEBHOOK_ALLOW_PRIVATE


def webhook_url_problem(url: str) -> str | None:
    """Why this URL cannot be registered as a webhook, or None.

    1. It is an absolute http or https URL of at most MAX_WEBHOOK_URL characters,
       with a host (a DNS name or an IP address) and, if any, a port 1-65535.
    2. Unless private addresses are allowed, a host that is an address (in any
       spelling) or a localhost name must not be on the platform's network; a
       name is resolved and checked when the webhook is sent.
    """
    if len(url) > MAX_WEBHOOK_URL:
        return f"Must be at most {MAX_WEBHOOK_URL} characters."
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "Must not contain spaces or control characters."
    try:
        parts = urlsplit(url)
        port = parts.port
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        return f"Not a valid URL: {exc}."
    if parts.scheme not in ("http", "https"):
        return "Must be an http or https URL."
    host = parts.hostname or ""
    if not host:
        return "Must name a host."
    if port == 0:
        return "The port must be 1-65535."
    address = _literal_address(host)
    if address is None:
        try:
            ascii_host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return f"{host!r} is not a valid host name."
        if not _DNS_NAME.match(ascii_host):
            return f"{host!r} is not a valid host name."
    if private_allowed():
        return None
    if address is not None:
        problem = address_problem(address)
        return f"Must not point at the platform's network: {problem}." if problem else None
    if host.rstrip(".") == "localhost" or host.rstrip(".").endswith(".localhost"):
        return "Must not point at the platform's network: localhost is a loopback name."
    return None


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: str
    trusted: bool  # the platform's own (MATIH_WEBHOOK_URLS): not checked for private addresses


def _tenant_webhooks(values) -> list:
    """settings.notifications.webhooks, tolerating settings stored before they were validated."""
    notifications = values.get("notifications") if isinstance(values, dict) else None
    hooks = notifications.get("webhooks") if isinstance(notifications, dict) else None
    return hooks if isinstance(hooks, list) else []


def _email_wanted(values) -> bool:
    notifications = values.get("notifications") if isinstance(values, dict) else None
    return not isinstance(notifications, dict) or notifications.get("email", True) is not False


def _webhook_targets(job: ProvisioningJob) -> list[WebhookTarget]:
    """The tenant's own webhooks (settings.notifications.webhooks) and the platform's."""
    targets = []
    values = getattr(getattr(job.tenant, "settings", None), "values", {}) or {}
    for hook in _tenant_webhooks(values):
        if isinstance(hook, dict) and isinstance(hook.get("url"), str):
            targets.append(WebhookTarget(hook["url"], str(hook.get("secret", "")), trusted=False))
        elif isinstance(hook, str):
            targets.append(WebhookTarget(hook, "", trusted=False))
    targets += [WebhookTarget(url, settings.MATIH_WEBHOOK_SECRET, trusted=True) for url in settings.MATIH_WEBHOOK_URLS]
    return targets


def _pinned_request(url: str) -> tuple[str, dict, dict]:
    """(url to send to, extra headers, httpx extensions): the name resolved once, every address checked,
    the request sent to the first, with the original Host header and TLS server name.

    Raises WebhookRefused if any address the name resolves to is on the platform's network.
    """
    target = httpx.URL(url)
    host = target.host
    if not host:
        raise WebhookRefused("the URL names no host")
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise WebhookRefused(f"{host} does not resolve: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    for address in addresses:
        problem = address_problem(address)
        if problem:
            raise WebhookRefused(f"{host} resolves to {problem}; set MATIH_WEBHOOK_ALLOW_PRIVATE=true to allow it")
    pinned = target.copy_with(host=str(addresses[0]))
    return str(pinned), {"Host": target.netloc.decode("ascii")}, {"sni_hostname": host}


# One event name per operation's end: "{operation}.{completed|failed|cancelled}".
OPERATION_NOUNS = {
    JobKind.PROVISION: "provisioning", JobKind.CHANGE_TIER: "tier_change", JobKind.SUSPEND: "suspension",
    JobKind.ACTIVATE: "activation", JobKind.DEPROVISION: "deprovisioning",
}


def event_name(job: ProvisioningJob) -> str:
    return f"{OPERATION_NOUNS[job.kind]}.{job.status.lower()}"


def _payload(job: ProvisioningJob) -> dict:
    return {
        "event": event_name(job), "kind": job.kind, "fromTier": job.from_tier, "toTier": job.to_tier,
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
    if _email_wanted(values):
        _send_email(job)
    for target in _webhook_targets(job):
        delivery, created = WebhookDelivery.objects.get_or_create(
            job=job, url=target.url[:MAX_WEBHOOK_URL], event=payload["event"],
            defaults={"payload": payload, "next_attempt_at": timezone.now()})
        if created:
            deliver_webhook.delay(delivery.id)


EMAIL_SUBJECTS = {
    (JobKind.PROVISION, True): "Your MATIH tenant {slug} is ready",
    (JobKind.PROVISION, False): "Provisioning of your MATIH tenant {slug} did not finish",
    (JobKind.CHANGE_TIER, True): "Your MATIH tenant {slug} is now {tier}",
    (JobKind.CHANGE_TIER, False): "The tier change of your MATIH tenant {slug} did not finish",
    (JobKind.SUSPEND, True): "Your MATIH tenant {slug} is suspended",
    (JobKind.SUSPEND, False): "The suspension of your MATIH tenant {slug} did not finish",
    (JobKind.ACTIVATE, True): "Your MATIH tenant {slug} is active again",
    (JobKind.ACTIVATE, False): "The activation of your MATIH tenant {slug} did not finish",
    (JobKind.DEPROVISION, False): "The deletion of your MATIH tenant {slug} did not finish",
}


def _send_email(job: ProvisioningJob) -> None:
    """The tenant's admin hears how the operation ended (not after a deletion: the address is gone)."""
    tenant = job.tenant
    completed = job.status == JobStatus.COMPLETED
    subject = EMAIL_SUBJECTS.get((job.kind, completed))
    if subject is None or tenant.status == "DELETED":
        return
    subject = subject.format(slug=tenant.slug, tier=job.tier)
    if completed:
        body = f"Tenant {tenant.name} ({tenant.slug}, {tenant.tier}) is {tenant.status}: {job.kind} completed."
    else:
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
    job = ProvisioningJob.objects.select_related("tenant", "tenant__settings").get(id=delivery.job_id)
    target = next((t for t in _webhook_targets(job) if t.url[:MAX_WEBHOOK_URL] == delivery.url),
                  WebhookTarget(delivery.url, "", trusted=False))
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": "matih-webhooks/1",
               "X-Matih-Event": delivery.event, "X-Matih-Delivery": str(delivery.id),
               "X-Matih-Timestamp": timestamp}
    if target.secret:
        headers["X-Matih-Signature"] = sign(target.secret, timestamp, body)
    code, error = None, ""
    try:
        code = _post(target, body, headers)
        ok = 200 <= code < 300
        if not ok:
            error = f"HTTP {code}"
    except Exception as exc:  # any failure is an attempt on the ladder: a refused address, a bad URL, the network
        ok, error = False, f"{type(exc).__name__}: {exc}"
        log.warning("webhook attempt failed", extra={"deliveryId": delivery.id, "error": error})
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


def _post(target: WebhookTarget, body: bytes, headers: dict) -> int:
    """POST the body; the status code. Redirects are not followed (they could lead anywhere)."""
    url, extensions = target.url, {}
    if not target.trusted and not private_allowed():
        url, host_header, extensions = _pinned_request(target.url)
        headers = {**headers, **host_header}
    with httpx.Client(timeout=WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False) as client:
        return client.post(url, content=body, headers=headers, extensions=extensions).status_code


def webhook_backoff(attempts: int) -> float:
    ladder = settings.MATIH_WEBHOOK_BACKOFF
    return float(ladder[min(attempts - 1, len(ladder) - 1)])
