"""``python -m recforge``: the same command line as the ``recforge`` script."""

import sys

from recforge.cli import main

sys.exit(main())
