"""Evaluate enhanced wavs against clean references (PESQ / ESTOI / SI-SDR tables): a thin shim for
`sgmse-evaluate`; the command lives in sgmse_nc/eval/evaluate.py (`evaluate.py --help`)."""
import sys

from sgmse_nc.eval.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
