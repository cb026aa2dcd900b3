"""``app``: the Django project's WSGI app (Django's own handler)."""
import os

from django.core.wsgi import get_wsgi_application

from .. import FileWrapperProbe

os.environ.setdefault("DJANGO_SETTINGS_MODULE", __package__ + ".settings")
django_app = get_wsgi_application()
app = FileWrapperProbe(django_app)

from . import views

feed = views.feed
