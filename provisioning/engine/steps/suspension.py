"""The steps of SUSPEND and ACTIVATE: workloads to zero (their replicas kept on the objects), the
quota at zero pods, the ingress answering 503; and each of these back."""
from __future__ import annotations

from deploy.inventory import SUSPENDED_SERVICE
from provisioning.engine import steps_catalog as C
from provisioning.engine.steps.context import StepContext, StepImplementation


def _suspended_service(ctx: StepContext) -> list[dict]:
    spec = ctx.spec
    return [{"kind": "Service", "name": f"{spec.namespace}/{SUSPENDED_SERVICE}",
             "location": spec.cluster.name if spec.cluster is not None else None}]


def scale_down_workloads(ctx: StepContext) -> dict:
    return ctx.backend.kubernetes.scale_workloads(ctx.spec, 0)


def scale_up_workloads(ctx: StepContext, outputs: dict | None = None) -> dict:
    return ctx.backend.kubernetes.restore_workloads(ctx.spec)


def scale_down_again(ctx: StepContext, outputs: dict) -> dict:
    return scale_down_workloads(ctx)


def suspend_quota(ctx: StepContext) -> dict:
    return ctx.backend.kubernetes.patch_quota(ctx.spec, {"pods": "0"})


def restore_quota(ctx: StepContext, outputs: dict | None = None) -> dict:
    return ctx.backend.kubernetes.ensure_quotas(ctx.spec)


def suspend_quota_again(ctx: StepContext, outputs: dict) -> dict:
    return suspend_quota(ctx)


def block_ingress(ctx: StepContext, outputs: dict | None = None) -> dict:
    return ctx.backend.kubernetes.block_ingress(ctx.spec)


def unblock_ingress(ctx: StepContext, outputs: dict | None = None) -> dict:
    result = ctx.backend.kubernetes.unblock_ingress(ctx.spec) or {}
    return {**result, "removed": _suspended_service(ctx)}


STEPS: dict[str, StepImplementation] = {
    C.SCALE_DOWN_WORKLOADS: StepImplementation(scale_down_workloads, scale_up_workloads),
    C.SUSPEND_QUOTA: StepImplementation(suspend_quota, restore_quota),
    C.BLOCK_INGRESS: StepImplementation(block_ingress, unblock_ingress),
    C.UNBLOCK_INGRESS: StepImplementation(unblock_ingress, block_ingress),
    C.RESTORE_QUOTA: StepImplementation(restore_quota, suspend_quota_again),
    C.SCALE_UP_WORKLOADS: StepImplementation(scale_up_workloads, scale_down_again),
}
