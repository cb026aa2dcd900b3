"""``python -m gkit module:app``: the same as the ``gkit`` command."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
