"""``python -m scasml``: the same as the ``scasml`` command (``scasml.cli.console``)."""

import sys

from .cli import console

if __name__ == "__main__":
    sys.exit(console())
