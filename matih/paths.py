"""How API and WebSocket paths may be spelt, in one place.

A path under /api/ or /ws/ answers whether or not it ends with a slash, and
whatever the case of a UUID in it (`format: uuid` allows upper case; Django's
`uuid` converter takes only lower case). Routes are declared once, in one
spelling; the other spellings are tried only when a path matches no route as
it is, so the declared spelling costs nothing more.

Over HTTP, `ApiPathFallback` is the last URL pattern of the root URLconf:
it resolves the other spellings of a path under /api/ against the patterns
before it, and answers anything still unmatched with a JSON 404 in the error
shape (matih/api.py). A route added to any URLconf included under /api/ gets
both for free. The WebSocket router (provisioning/live/routing.py) uses
`spellings()` the same way.
"""
from __future__ import annotations

import re

from django.http import JsonResponse
from django.urls import Resolver404, URLPattern, URLResolver
from django.urls.resolvers import RegexPattern, ResolverMatch
from django.views.decorators.csrf import csrf_exempt

_UUID = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}(?![0-9A-Za-z])")
# The prefixes whose answers are always JSON (never Django's HTML pages), over HTTP.
JSON_PREFIXES = ("/api/", "/ws/")


def spellings(path: str) -> list[str]:
    """The other spellings of `path` to try, most likely first: UUIDs in lower case, the slash toggled."""
    lowered = _UUID.sub(lambda match: match.group(0).lower(), path)
    toggled = lowered[:-1] if lowered.endswith("/") else lowered + "/"
    candidates = [lowered, toggled] if lowered != path else [toggled]
    return [candidate for candidate in candidates if candidate.strip("/")]


def answers_json(path: str) -> bool:
    return path.startswith(JSON_PREFIXES) or path.rstrip("/") in ("/api", "/ws")


def not_found_body(path: str) -> dict:
    return {"error": "not_found", "detail": f"No API resource at {path}; the API is described at /api/schema/."}


@csrf_exempt
def unknown_api_path(request) -> JsonResponse:
    return JsonResponse(not_found_body(request.path), status=404)


class ApiPathFallback(URLPattern):
    """The last root URL pattern: other spellings of an /api/ path, else a JSON 404.

    1. Only paths under api/ are ours; anything else is left to Django (its 404 page).
    2. Resolve each other spelling (spellings()) against the patterns declared
       before this one; the first match is returned as it is, so the view, its
       route template (the metrics' label) and its CSRF exemption are the route's own.
    3. Nothing matched: the JSON 404 view, with no route (the metrics count it as unmatched).
    """

    def __init__(self, patterns: list, prefix: str = "api"):
        super().__init__(RegexPattern(rf"^{prefix}(?:/|$)"), unknown_api_path, name=None)
        self._resolver = URLResolver(RegexPattern(r"^"), list(patterns))

    def resolve(self, path):
        if not self.pattern.regex.match(path):
            return None
        for candidate in spellings(path):
            try:
                return self._resolver.resolve(candidate)
            except Resolver404:
                continue
        return ResolverMatch(unknown_api_path, (), {}, url_name=None, route="", captured_kwargs={}, extra_kwargs={})
