"""The real Helm driver: the tenant charts of deploy/charts as releases per tenant.

Cluster operations go through Helm's own Go engine in-process (`helm-python-sdk`,
import name `helm_python`, Helm SDK v4: server-side apply, release records as
Secrets in the tenant's namespace) or, with mode="cli", through a `helm` binary. Rendering and linting always use the in-process engine: they need no
cluster, and it is the same engine either way.

Values, lowest precedence first: the chart's values.yaml; `platform_values`
(settings of the whole platform, e.g. the data-plane PostgreSQL host); the
`tenant` block built from the TenantSpec (id, slug, tier, domain); the caller's
values; and last the caller's `custom` block (the tenant's own configuration of
that chart), merged over the top. The charts choose their per-tier profile
(`.Values.tiers[tenant.tier]`) themselves and check `tenant` with values.schema.json.

`install` is `upgrade --install` made safe to repeat:
1. no release yet                  -> install
2. deployed (or failed after a good revision) -> upgrade
3. the first install never finished (pending-install, or failed with no good
   revision: a worker died or the wait timed out) -> uninstall, then install
4. pending-upgrade/pending-rollback (a worker died mid-upgrade) -> roll back to
   the last good revision, then upgrade
"""
from __future__ import annotations

import copy
import json
import logging
import os
import re
import subprocess
import tempfile
from pathlib import Path

import yaml

from deploy import inventory
from deploy.errors import InfraError, PermanentInfraError, TransientInfraError
from deploy.interfaces import ClusterRef, TenantSpec

logger = logging.getLogger(__name__)

CHARTS_DIR = Path(__file__).resolve().parent / "charts"
TRANSIENT_PATTERNS = re.compile(
    r"timed out|deadline exceeded|connection refused|connection reset|i/o timeout|no such host|"
    r"another operation .* in progress|tls handshake|unexpected eof|too many requests|"
    r"service unavailable|the server is currently unable|etcdserver|\b429\b|\b50[0234]\b",
    re.IGNORECASE,
)


def deep_merge(base: dict, override: dict) -> dict:
    """Values merged the way Helm coalesces them: maps recursively, anything else replaced."""
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_manifests(rendered: dict[str, str]) -> list[dict]:
    """Template path -> YAML stream, as Helm renders it, to a list of objects (NOTES and empties dropped)."""
    objects = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(rendered[path]) if doc)
    return objects


def _helm():
    import helm_python  # imported late: a 240 MB native library nobody needs in the simulated run

    return helm_python


def classify_helm_error(exc: Exception, what: str) -> InfraError:
    helm = _helm()
    message = str(getattr(exc, "detail", "") or exc)
    if isinstance(exc, (helm.HelmKubeError, helm.HelmCancelledError)):
        return TransientInfraError(f"Helm could not reach the cluster during {what}", provider_message=message,
                                   hint="check the cluster's API endpoint and credentials; retrying may succeed")
    if isinstance(exc, (helm.HelmChartLoadError, helm.HelmChartInvalidError, helm.HelmValuesError,
                        helm.HelmRenderError, helm.HelmInvalidArgError)):
        return PermanentInfraError(f"Helm rejected the chart during {what}", provider_message=message,
                                   hint="the chart or the tenant's values are invalid; fix them and retry")
    if TRANSIENT_PATTERNS.search(message):
        return TransientInfraError(f"Helm {what} did not finish", provider_message=message,
                                   hint="the cluster was slow or busy; the next attempt resumes the release")
    return PermanentInfraError(f"Helm {what} failed", provider_message=message,
                               hint="inspect the release with `helm status` / `helm history`")


class HelmReleaseDriver:
    """HelmDriver: one release per (tenant namespace, release name)."""

    def __init__(self, charts_dir: str | os.PathLike = CHARTS_DIR, *, default_cluster: ClusterRef | None = None,
                 mode: str = "sdk", helm_bin: str = "helm", timeout: int = 300, wait: bool = True,
                 storage_driver: str = "secret", kube_version: str = "v1.33.0",
                 platform_values: dict | None = None):
        if mode not in ("sdk", "cli"):
            raise ValueError(f"MATIH_HELM_MODE must be 'sdk' or 'cli', not {mode!r}")
        self.charts_dir = Path(charts_dir)
        self.default_cluster = default_cluster
        self.mode = mode
        self.helm_bin = helm_bin
        self.timeout = timeout
        self.wait = wait
        self.storage_driver = storage_driver
        self.kube_version = kube_version
        self.platform_values = platform_values or {}

    # --- charts and values ----------------------------------------------------------

    def chart_path(self, chart: str) -> Path:
        path = Path(chart) if os.path.isabs(chart) else self.charts_dir / chart
        if not (path / "Chart.yaml").is_file():
            raise PermanentInfraError(f"no Helm chart {chart!r}", hint=f"charts live in {self.charts_dir}")
        return path

    @staticmethod
    def tenant_values(spec: TenantSpec) -> dict:
        return {"tenant": {"id": spec.tenant_id, "slug": spec.slug, "tier": spec.tier.upper(),
                           "domain": spec.dns_zone}}

    def values_for(self, spec: TenantSpec, values: dict | None) -> dict:
        values = dict(values or {})
        custom = values.pop("custom", None) or {}
        merged = deep_merge(self.platform_values, self.tenant_values(spec))
        return deep_merge(deep_merge(merged, values), custom)

    def chart_info(self, chart: str) -> dict:
        """Addition to the interface: name, version and default values of a chart (for plans)."""
        helm = _helm()
        with helm.Chart.load(self.chart_path(chart)) as loaded:
            return {"name": loaded.name, "version": loaded.version, "values": loaded.values}

    def render(self, spec: TenantSpec, release: str, chart: str, values: dict) -> list[dict]:
        helm = _helm()
        try:
            with helm.Chart.load(self.chart_path(chart)) as loaded:
                rendered = loaded.render(values=self.values_for(spec, values), name=release,
                                         namespace=spec.namespace, is_install=True)
        except helm.HelmError as exc:
            raise classify_helm_error(exc, f"rendering {chart}") from exc
        return parse_manifests(rendered)

    def lint(self, spec: TenantSpec, chart: str, values: dict | None = None) -> list[str]:
        """Addition to the interface: `helm lint --strict` findings (warnings and errors) for this tenant."""
        helm = _helm()
        report = helm.lint(self.chart_path(chart), self.values_for(spec, values), strict=True,
                           namespace=spec.namespace, kube_version=self.kube_version)
        findings = [f"{m['path']}: {m['error']}" for m in report.get("messages", []) if m.get("severity", 0) >= 2]
        return findings + list(report.get("errors") or [])

    # --- releases -------------------------------------------------------------------------

    def install(self, spec: TenantSpec, release: str, chart: str, values: dict) -> dict:
        path = self.chart_path(chart)
        merged = self.values_for(spec, values)
        if self.mode == "cli":
            result = self._cli_install(spec, release, path, merged)
        else:
            result = self._sdk_install(spec, release, path, merged)
        logger.info("helm release %s/%s %s at revision %s", spec.namespace, release,
                    result["status"], result["revision"])
        return {**result, "resources": [self._resource(spec, release)]}

    def releases(self, spec: TenantSpec) -> list[str]:
        """The names of every release in the tenant's namespace, in any state (`helm list --all`)."""
        if self.mode == "cli":
            output = self._run_cli(["list", "--namespace", spec.namespace, "--all", "--output", "json",
                                    *self._cli_cluster_args(spec)], "list")
            listed = json.loads(output or "[]")
        else:
            helm = _helm()
            try:
                with self._config(spec) as cfg:
                    listed = cfg.list(all_states=True)
            except helm.HelmError as exc:
                raise classify_helm_error(exc, f"listing the releases of {spec.namespace}") from exc
        return sorted({str(item.get("name")) for item in listed or [] if item.get("name")})

    def leftovers(self, spec: TenantSpec) -> list[dict]:
        """Releases still recorded in the tenant's namespace, asked of the cluster (their release Secrets)."""
        return [self._resource(spec, release) for release in self.releases(spec)]

    def _resource(self, spec: TenantSpec, release: str) -> dict:
        return inventory.resource("HelmRelease", inventory.namespaced(spec, release),
                                  inventory.cluster_location(spec, self.default_cluster))

    def uninstall(self, spec: TenantSpec, release: str) -> None:
        if self.mode == "cli":
            self._run_cli(["uninstall", release, "--namespace", spec.namespace, "--ignore-not-found",
                           "--timeout", f"{self.timeout}s", *self._cli_cluster_args(spec)],
                          f"uninstall of {release}")
            return
        helm = _helm()
        try:
            with self._config(spec) as cfg:
                cfg.uninstall(release, ignore_not_found=True, timeout=self.timeout)
        except helm.HelmNotFoundError:
            return
        except helm.HelmError as exc:
            raise classify_helm_error(exc, f"uninstall of {release}") from exc
        logger.info("helm release %s/%s uninstalled", spec.namespace, release)

    # --- the in-process engine ---------------------------------------------------------

    def _cluster(self, spec: TenantSpec) -> ClusterRef | None:
        cluster = spec.cluster
        if cluster is None or not (cluster.api_endpoint or cluster.credentials_ref):
            return self.default_cluster  # a cluster row not filled in yet: the default cluster
        return cluster

    def _config(self, spec: TenantSpec):
        helm = _helm()
        cluster = self._cluster(spec)
        return helm.Config(
            kubeconfig_path=(cluster.credentials_ref or None) if cluster else None,
            kube_apiserver=(cluster.api_endpoint or None) if cluster else None,
            namespace=spec.namespace,
            storage_driver=self.storage_driver,
        )

    def _sdk_install(self, spec: TenantSpec, release: str, path: Path, values: dict) -> dict:
        helm = _helm()
        wait = "watcher" if self.wait else None
        what = f"install of {release} ({path.name})"
        try:
            with self._config(spec) as cfg, helm.Chart.load(path) as chart:
                state = self._state(cfg, release)
                if state in ("pending-install", "failed-first", "uninstalling"):
                    cfg.uninstall(release, ignore_not_found=True, timeout=self.timeout)
                    state = None
                if state in ("pending-upgrade", "pending-rollback"):
                    cfg.rollback(release, timeout=self.timeout)
                if state is None:
                    summary = cfg.install(chart, release, values, namespace=spec.namespace, timeout=self.timeout,
                                          wait=wait, labels={"matih.ai/tenant": spec.slug})
                else:
                    summary = cfg.upgrade(chart, release, values, namespace=spec.namespace, timeout=self.timeout,
                                          wait=wait, labels={"matih.ai/tenant": spec.slug}, max_history=10)
        except helm.HelmError as exc:
            raise classify_helm_error(exc, what) from exc
        return {"release": release, "namespace": spec.namespace, "chart": f"{path.name}",
                "revision": summary.get("revision"), "status": summary.get("status"),
                "chartVersion": summary.get("chart_version")}

    @staticmethod
    def _state(cfg, release: str) -> str | None:
        """None (no release), a Helm status, or "failed-first" (failed with no good revision)."""
        helm = _helm()
        try:
            history = cfg.history(release)
        except helm.HelmNotFoundError:
            return None
        if not history:
            return None
        status = str(history[-1].get("status", "")).lower()
        good = any(str(h.get("status", "")).lower() in ("deployed", "superseded") for h in history)
        if status == "failed" and not good:
            return "failed-first"
        return status

    # --- the helm binary ---------------------------------------------------------------

    def _cli_cluster_args(self, spec: TenantSpec) -> list[str]:
        cluster = self._cluster(spec)
        args: list[str] = []
        if cluster and cluster.credentials_ref:
            args += ["--kubeconfig", cluster.credentials_ref]
        if cluster and cluster.api_endpoint:
            args += ["--kube-apiserver", cluster.api_endpoint]
        return args

    def _run_cli(self, args: list[str], what: str) -> str:
        try:
            done = subprocess.run([self.helm_bin, *args], capture_output=True, text=True,
                                  timeout=self.timeout + 60, check=False)
        except FileNotFoundError as exc:
            raise PermanentInfraError(f"no helm binary at {self.helm_bin!r}",
                                      hint="install helm or set MATIH_HELM_MODE=sdk") from exc
        except subprocess.TimeoutExpired as exc:
            raise TransientInfraError(f"helm {what} timed out", provider_message=str(exc)) from exc
        if done.returncode != 0:
            message = done.stderr.strip() or done.stdout.strip()
            if TRANSIENT_PATTERNS.search(message):
                raise TransientInfraError(f"helm {what} did not finish", provider_message=message,
                                          hint="the cluster was slow or busy; the next attempt resumes the release")
            raise PermanentInfraError(f"helm {what} failed", provider_message=message,
                                      hint="inspect the release with `helm status` / `helm history`")
        return done.stdout

    def _cli_install(self, spec: TenantSpec, release: str, path: Path, values: dict) -> dict:
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="matih-values-") as handle:
            json.dump(values, handle)  # JSON is YAML: helm reads it with --values
            handle.flush()
            args = ["upgrade", release, str(path), "--install", "--namespace", spec.namespace,
                    "--values", handle.name, "--timeout", f"{self.timeout}s", "--output", "json",
                    "--history-max", "10", *self._cli_cluster_args(spec)]
            if self.wait:
                args.append("--wait")
            output = self._run_cli(args, f"install of {release} ({path.name})")
        try:
            summary = json.loads(output)
        except ValueError:
            summary = {}
        return {"release": release, "namespace": spec.namespace, "chart": path.name,
                "revision": summary.get("version"), "status": (summary.get("info") or {}).get("status"),
                "chartVersion": ((summary.get("chart") or {}).get("metadata") or {}).get("version")}
