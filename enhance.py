"""Enhance noisy wavs with a trained checkpoint: a thin shim for `sgmse-enhance`; the command lives in
sgmse_nc/enhance/cli.py (`enhance.py --help`)."""
import sys

from sgmse_nc.enhance.cli import main

if __name__ == "__main__":
    sys.exit(main())
