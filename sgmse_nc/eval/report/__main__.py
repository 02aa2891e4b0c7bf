"""`python -m sgmse_nc.eval.report`: the report command (sgmse_nc.eval.report.cli)."""
import sys

from sgmse_nc.eval.report.cli import main

sys.exit(main())
