"""A module whose import fails, for the ``spoc-workers run`` tests."""

raise RuntimeError("broken at import time")
