"""The kit's tools, on top of every other layer: nothing in ``helpers`` imports them.

* :mod:`~helpers.tools.runner` - ``make run``: every lab headless with papermill;
* :mod:`~helpers.tools.grading` - ``make student`` / ``make grade``: student copies, nbval grading;
* :mod:`~helpers.tools.bench` - ``make bench``: speed and memory into ``build/bench.json``
  (sections in ``bench_*``).
"""
