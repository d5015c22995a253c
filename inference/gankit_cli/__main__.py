"""`python -m gankit_cli ...`: what `gankit` runs, and what `train --nproc` starts on each rank."""

import sys

from gankit_cli import main

sys.exit(main())
