from django.urls import path, re_path
from django.views.static import serve

from .. import STATIC_DIR
from . import views

urlpatterns = [
    path("hello", views.hello),
    path("ws", views.ws),
    path("stream", views.stream),
    path("poll", views.poll),
    path("publish", views.publish),
    re_path(r"^static/(?P<path>.+)$", serve, {"document_root": STATIC_DIR}),
]
