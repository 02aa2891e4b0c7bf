"""Train a noise-conditioned SGMSE+ model: a thin shim for `sgmse-train`; the command lives in
sgmse_nc/train/cli.py. Configs in conf/; e.g. `python train.py experiment=nc_baseline`."""
from sgmse_nc.train.cli import main

if __name__ == "__main__":
    main()
