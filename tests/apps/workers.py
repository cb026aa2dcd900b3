"""gunicorn worker classes for the tests: gkit's, with gkit options gunicorn
has no setting for, set the documented way (overriding ``gkit_options``)."""
from gkit.gunicorn import Worker


class H11Worker(Worker):
    """The gkit worker on the h11 engine (the default worker takes httptools)."""

    def gkit_options(self):
        return dict(super().gkit_options(), http="h11")
