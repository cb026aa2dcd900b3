"""Minimal settings: no database; CommonMiddleware (it sets Content-Length)
but no CSRF middleware, so POST /publish needs no token."""
from .. import STATIC_DIR  # noqa: F401  (used by urls)

SECRET_KEY = "gkit-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = __package__ + ".urls"
INSTALLED_APPS = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES = {}
USE_TZ = True
