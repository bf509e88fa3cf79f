"""Experiments behind the figures in ``docs/results.md`` and ``docs/mitm.md``: each ``.py`` is a module run from
the repository root (``python -m training.experiments.NAME --help``), each ``.sh`` a driver that trains and
evaluates a sequence of runs with ``python -m training.train`` / ``python -m evaluation``."""
