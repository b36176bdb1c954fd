"""What an operator can do from the admin's object pages: buttons, their URLs, confirmation pages.

An ObjectAction is one operation on one object (a job, a tenant): its name (the URL
segment), its button's label, when its button is enabled, the function that does it (it
calls provisioning.services like the API does, and returns what happened in a sentence),
and, for an operation that is hard to undo, the question its confirmation page asks, with
an optional form for what it needs to know (a reason, a new tier).

A ModelAdmin with ObjectActionsMixin lists its actions in `object_actions` and gets:
- a URL per action, `<object id>/<name>/`, named `admin:<app>_<model>_<name with _>`;
  POST performs it and redirects to `next` (or the object's page); GET shows the
  confirmation page of an action that asks first, and is a 405 for the others;
- `buttons(request, obj)` for its templates ({% action_button %} draws one);
- `perform(request, obj, action, data)` for its list actions, which reports success or
  the refusal (services.ActionRefused) in the admin's messages.

To add one (say, suspending a tenant, in tenants/admin.py):

    def _suspend(request, tenant, data) -> str:
        services.suspend(tenant=tenant, reason=data["reason"], actor=actor_of(request))
        return f"{tenant.slug} is being suspended."

    class ReasonForm(forms.Form):
        reason = forms.CharField(max_length=200)

    object_actions = (..., ObjectAction("suspend", "Suspend", _suspend,
                                        applies=lambda tenant: tenant.status == "ACTIVE",
                                        confirm="Its workloads scale to zero; its ingress answers 503.",
                                        form=ReasonForm))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from provisioning.services import ActionRefused


def actor_of(request: HttpRequest) -> str:
    """Who acted, for the job's events."""
    return request.user.email or request.user.get_username()


def _always(obj) -> bool:
    return True


@dataclass(frozen=True)
class ObjectAction:
    name: str  # the URL segment: "retry-now"
    label: str  # the button: "Retry now"
    run: Callable[[HttpRequest, Any, dict], str]  # does it; returns what happened; raises ActionRefused
    applies: Callable[[Any], bool] = _always  # enables the button (the service still has the last word)
    confirm: str = ""  # set: GET shows a confirmation page saying this
    form: type[forms.Form] | None = None  # what the confirmation page asks

    @property
    def asks_first(self) -> bool:
        return bool(self.confirm or self.form)

    @property
    def url_suffix(self) -> str:
        return self.name.replace("-", "_")


@dataclass(frozen=True)
class Button:
    """An action as its page shows it."""

    name: str
    label: str
    url: str
    enabled: bool = True
    asks_first: bool = False
    why_not: str = ""


class ObjectActionsMixin:
    """Object actions for a ModelAdmin (see the module's docstring). Put it before ModelAdmin."""

    object_actions: tuple[ObjectAction, ...] = ()

    def _url_name(self, action: ObjectAction) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{action.url_suffix}"

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(f"<path:object_id>/{action.name}/", wrap(self.object_action_view), {"action": action.name},
                 name=self._url_name(action))
            for action in self.object_actions
        ] + super().get_urls()

    def object_action(self, name: str) -> ObjectAction:
        for action in self.object_actions:
            if action.name == name:
                return action
        raise KeyError(name)

    def describe(self, obj) -> str:
        """How messages and the confirmation page name the object."""
        return str(obj)

    def buttons(self, request: HttpRequest, obj) -> list[Button]:
        if not self.has_change_permission(request, obj):
            return []
        now = f"Not while it is {obj.status}." if hasattr(obj, "status") else "Not now."
        return [
            Button(name=action.name, label=action.label, asks_first=action.asks_first,
                   url=reverse(f"admin:{self._url_name(action)}", args=[obj.pk]),
                   enabled=action.applies(obj), why_not="" if action.applies(obj) else now)
            for action in self.object_actions
        ]

    def perform(self, request: HttpRequest, obj, action: str, data: dict | None = None) -> bool:
        """Run one action on one object, read afresh; say what happened (or why not) in the messages."""
        fresh = self.get_object(request, str(obj.pk))
        if fresh is None:
            messages.error(request, f"{self.describe(obj)}: it is gone.")
            return False
        obj = fresh
        try:
            messages.success(request, self.object_action(action).run(request, obj, data or {}))
            return True
        except ActionRefused as exc:
            messages.error(request, f"{self.describe(obj)}: {exc}")
            return False

    def object_action_view(self, request: HttpRequest, object_id: str, action: str):
        chosen = self.object_action(action)
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with id {object_id}.")
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        target = self._next_url(request, obj)
        if request.method == "POST":
            form = chosen.form(request.POST) if chosen.form else None
            if form is None or form.is_valid():
                self.perform(request, obj, action, form.cleaned_data if form else None)
                return HttpResponseRedirect(target)
        elif request.method == "GET" and chosen.asks_first:
            form = chosen.form() if chosen.form else None
        else:
            return HttpResponseNotAllowed(["POST"])
        context = {
            **self.admin_site.each_context(request),
            "title": f"{chosen.label}: {self.describe(obj)}",
            "opts": self.opts,
            "object": obj,
            "action": chosen,
            "form": form,
            "applies": chosen.applies(obj),
            "next": target,
            "object_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk]),
        }
        return TemplateResponse(request, "provisioning/confirm_action.html", context)

    def _next_url(self, request: HttpRequest, obj) -> str:
        target = request.POST.get("next") or request.GET.get("next") or ""
        if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
            return target
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk])
