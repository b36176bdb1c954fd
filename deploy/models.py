from __future__ import annotations

from django.db import models


class Cluster(models.Model):
    """A Kubernetes cluster tenants can live on: shared (many tenants) or dedicated (one)."""

    class Kind(models.TextChoices):
        SHARED = "SHARED"
        DEDICATED = "DEDICATED"

    name = models.CharField(max_length=120, unique=True)
    region = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SHARED)
    api_endpoint = models.CharField(max_length=255, blank=True, default="")
    # Where the credentials are (a kubeconfig path or a secret name); never the credentials.
    credentials_ref = models.CharField(max_length=255, blank=True, default="")
    ingress_ip = models.GenericIPAddressField(null=True, blank=True)
    capacity = models.PositiveIntegerField(default=500, help_text="How many tenants it may hold.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["region", "kind"])]

    def __str__(self) -> str:
        return self.name


class ClusterSlot(models.Model):
    """A tenant's place on a cluster; released by the compensation of cluster selection."""

    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="slots")
    tenant_key = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)


class SimulatedResource(models.Model):
    """What the simulated cloud holds: one row per resource, with its state in `data`.

    Unique per (kind, location, name), as in the systems it plays: a tenant being
    upgraded to ENTERPRISE has a namespace tenant-{slug} on the shared cluster and
    on its dedicated one at once.
    """

    kind = models.CharField(max_length=40)
    # In byte order ("C"), so that the unique index (kind, location, name) also serves the names under
    # a prefix (a namespace's "tenant-acme/..."), which a linguistic collation's order cannot.
    name = models.CharField(max_length=255, db_collation="C")
    location = models.CharField(max_length=255, blank=True, default="",
                                help_text="Where it lives: the cluster, the zone, the server, the workspace.")
    owner = models.CharField(max_length=100, db_index=True, help_text="The tenant slug it belongs to.")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "location", "name"],
                                               name="simulated_resource_unique_where")]

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}@{self.location}"
