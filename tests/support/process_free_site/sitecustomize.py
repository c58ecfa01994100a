"""Hold a subprocess of a ``no_processes`` test to the test's word.

``tests/conftest.py`` puts this directory first on ``PYTHONPATH`` and sets
``SPOC_WORKERS_TEST_NO_PROCESSES=1`` while such a test runs, so every Python
it starts (a script, an example, a docs block) imports this module first.
There, starting a multiprocessing process raises: a test that runs under one
start method only must not depend on the start method.
"""

import os

if os.environ.get("SPOC_WORKERS_TEST_NO_PROCESSES") == "1":
    import multiprocessing.process

    def _refuse(self, *args, **kwargs):
        raise RuntimeError(
            f"{self!r} started in a subprocess of a test marked no_processes: remove the mark, "
            "so that the test runs under every start method"
        )

    multiprocessing.process.BaseProcess.start = _refuse
