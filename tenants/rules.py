"""The rules of a tenant's names, in one place: the slug (a DNS label) and the reserved slugs."""
from __future__ import annotations

import re

SLUG_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
SLUG_MIN, SLUG_MAX = 3, 63
RESERVED_SLUGS = frozenset({
    "admin", "api", "www", "app", "apps", "auth", "login", "static", "media", "assets", "docs", "status",
    "mail", "smtp", "ftp", "ns", "ns1", "ns2", "dns", "root", "system", "internal", "matih", "platform",
    "default", "kube-system", "kube-public", "kube-node-lease", "cert-manager", "ingress-nginx",
    "monitoring", "grafana", "prometheus", "bi", "dashboard", "support", "billing", "test", "localhost",
})


def is_valid_slug(slug: str) -> bool:
    """A DNS label of 3-63 characters: lowercase letters, digits and hyphens, not at either end."""
    return SLUG_MIN <= len(slug) <= SLUG_MAX and SLUG_PATTERN.match(slug) is not None
