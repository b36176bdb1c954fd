import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.floor.settings")
os.environ.setdefault("MATIH_DB_POOL", "true")  # as matih.asgi: a sync view under ASGI needs the pool
application = get_asgi_application()
