"""The test routes (see ``apps/__init__``) as a minimal Django project:
``settings``, ``urls``, ``views``, and ``wsgi`` (whose ``app`` is the WSGI
app); static files by Django's ``django.views.static.serve``."""
