"""Errors the drivers raise, classified for the orchestrator.

Transient: worth retrying later (timeouts, 5xx, 429 with Retry-After, conflicts).
Permanent: retrying cannot help (validation, bad credentials, quota refused).
Each carries what a person needs to act: the provider's message and a hint.
"""
from __future__ import annotations


class InfraError(Exception):
    transient = True

    def __init__(self, message: str, *, provider_message: str = "", hint: str = "",
                 retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.provider_message = provider_message
        self.hint = hint
        self.retry_after = retry_after

    def describe(self) -> str:
        parts = [self.message.rstrip(".")]
        if self.provider_message and self.provider_message not in self.message:
            parts.append(f"provider said: {self.provider_message}")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "; ".join(parts)


class TransientInfraError(InfraError):
    transient = True


class PermanentInfraError(InfraError):
    transient = False
