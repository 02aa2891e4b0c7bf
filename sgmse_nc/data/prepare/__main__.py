"""`python -m sgmse_nc.data.prepare ...`: the same command as sgmse-prepare."""
import sys

from sgmse_nc.data.prepare.cli import main

sys.exit(main())
