"""WebSocket routes. A path answers in its other spellings too (trailing slash, UUID case: matih.paths);
a path that matches no route is refused at the handshake (close before accept: HTTP 403), not a 500."""
from __future__ import annotations

from channels.routing import URLRouter
from django.urls import path

from matih.paths import spellings
from provisioning.live.consumers import DashboardConsumer, TenantStatusConsumer

websocket_urlpatterns = [
    path("ws/tenants/<uuid:tenant_id>/provisioning/", TenantStatusConsumer.as_asgi()),
    path("ws/provisioning/", DashboardConsumer.as_asgi()),
]


class LenientURLRouter(URLRouter):
    """Channels' URLRouter that tries a path's other spellings and refuses what matches no route."""

    def _matches(self, candidate: str) -> bool:
        return any(route.pattern.match(candidate.lstrip("/")) for route in self.routes)

    async def __call__(self, scope, receive, send):
        original = scope.get("path", "")
        for candidate in (original, *spellings(original)):
            if self._matches(candidate):
                return await super().__call__({**scope, "path": candidate}, receive, send)
        await refuse(scope, receive, send)


async def refuse(scope, receive, send) -> None:
    """No such route: the WebSocket is closed before it is accepted (the server answers the handshake 403)."""
    await receive()  # websocket.connect
    await send({"type": "websocket.close", "code": 4404})


def websocket_application():
    return LenientURLRouter(websocket_urlpatterns)
