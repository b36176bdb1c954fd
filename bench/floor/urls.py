from django.http import JsonResponse
from django.urls import path

from bench.floor.views import Registration


def healthz(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("healthz", healthz),
    path("api/v1/tenants", Registration.as_view()),
]
