"""What each step does and what undoes it, one module per operation (see context.py for what a
step sees and returns). IMPLEMENTATIONS maps every step of the catalog to its implementation."""
from __future__ import annotations

from provisioning.engine import steps_catalog as C
from provisioning.engine.steps import change_tier, deprovision, provision, suspension
from provisioning.engine.steps.context import StepContext, StepImplementation
from provisioning.engine.steps.provision import RELEASES, _terraform_variables, _values

IMPLEMENTATIONS: dict[str, StepImplementation] = {
    **provision.STEPS, **change_tier.STEPS, **suspension.STEPS, **deprovision.STEPS,
}

assert set(IMPLEMENTATIONS) == set(C.NOMINAL_SECONDS), \
    f"every step of the catalog has an implementation: {set(C.NOMINAL_SECONDS) ^ set(IMPLEMENTATIONS)}"
assert all((IMPLEMENTATIONS[name].compensate is None) == (C.COMPENSATIONS.get(name) is None)
           for name in C.NOMINAL_SECONDS), "the catalog's compensations match the implementations"

__all__ = ["IMPLEMENTATIONS", "RELEASES", "StepContext", "StepImplementation", "_terraform_variables", "_values"]
