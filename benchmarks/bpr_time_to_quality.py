"""BPR on a large log: fit time against NDCG@10 for recforge and implicit, a few budgets each.

The ``bpr`` family of ``benchmarks/time_to_quality.py`` under its first name, so that the
commands recorded in ``docs/benchmarks/speed_bpr_10m_quality*`` still reproduce.

Usage: ``python benchmarks/bpr_time_to_quality.py [DATASET [THREADS [OUT [EPOCHS [ITERATIONS]]]]]``
(defaults: ``synthetic-10m``, 2 threads, ``docs/benchmarks/speed_bpr_10m_quality``, recforge
epochs ``2,5,10,20``, implicit iterations ``25,50,100``; the budgets as comma lists). Writes
``OUT/bpr_time_to_quality.{json,md}``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from time_to_quality import main

if __name__ == "__main__":
    main("bpr", sys.argv[1:], "python benchmarks/bpr_time_to_quality.py " + " ".join(sys.argv[1:]))
