"""HTTP and WebSocket, one ASGI application."""
import logging
import os
import re

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matih.settings")
# Under ASGI a sync view runs in a thread, and CONN_MAX_AGE would open a new PostgreSQL
# connection per request: this entry point turns Django's psycopg pool on unless the
# environment says otherwise (MATIH_DB_POOL=false). The settings module is shared with
# WSGI and the Celery workers, so the choice is made here, before the settings load.
os.environ.setdefault("MATIH_DB_POOL", "true")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from matih.observability import redact  # noqa: E402
from provisioning.live.routing import websocket_application  # noqa: E402


class BrowserOriginValidator(OriginValidator):
    """Browsers must come from one of ALLOWED_HOSTS; clients that send no Origin (not browsers) may connect.

    A cross-site page could otherwise open a WebSocket with the operator's
    session cookie; a client without an Origin header authenticates with its
    token and has no cookie to abuse.
    """

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or super().valid_origin(parsed_origin)


_TOKEN_PARAMETER = re.compile(r"([?&]token=)[^&\s\"']*")


def _mask(text: str) -> str:
    return _TOKEN_PARAMETER.sub(r"\1****", redact(text))


class RedactSecrets(logging.Filter):
    """The server logs a WebSocket's path with its query string (`?token=`): mask it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_mask(arg) if isinstance(arg, str) else arg for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = _mask(record.msg)
        return True


for _name in ("uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access"):
    logging.getLogger(_name).addFilter(RedactSecrets())

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": BrowserOriginValidator(AuthMiddlewareStack(websocket_application()),
                                        settings.ALLOWED_HOSTS),
})
