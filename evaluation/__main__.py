"""``python -m evaluation``: the evaluation command line (:mod:`evaluation.cli`)."""

import sys

from evaluation.cli import main

sys.exit(main())
