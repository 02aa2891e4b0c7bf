"""`python -m sgmse_nc.study ...`: the same command as sgmse-study."""
import sys

from sgmse_nc.study.cli import main

sys.exit(main())
