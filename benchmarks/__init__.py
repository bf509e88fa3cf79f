"""Speed and accuracy measurements (DESIGN section 7: ``--json PATH``, records printed as a table).

Run each from the repository root as a module, e.g. ``python -m benchmarks.bench_preprocess --json
bench-results/preprocess.json``; ``common`` holds the record type and timing helpers they share. These are
measurements, not tests: nothing here asserts a speed.
"""
