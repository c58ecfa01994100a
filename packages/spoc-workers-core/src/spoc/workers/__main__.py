"""``python -m spoc.workers``: the same as the ``spoc-workers`` command."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
