"""The train command (sgmse-train, train.py): Hydra composes conf/train.yaml with the command line's overrides.

    sgmse-train                                   # CPU demo on the synthetic corpus
    sgmse-train experiment=nc_baseline            # one experiment (scale=poc|paper)
    sgmse-train experiment=nc_baseline debug=tiny # smoke test: two steps of a tiny net on a CPU
    sgmse-train -m experiment=cfg_p0.1,cfg_p0.2   # a sweep

A problem the user can fix (an unknown option or key, a missing config, bad data) is one `error: ...` line and
exit status 2, as for every command (sgmse_nc.cli); Hydra's own reports (usage + message, exit 1) are turned
into that line here.
"""
from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from sgmse_nc.config import CONFIG_DIR  # also registers the run_key resolver that names run folders

PROG = "sgmse-train"
_task_started = False  # errors before the task are the command line's; after it, train() reports its own


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    from sgmse_nc.cli import report_error
    from sgmse_nc.train.run import optimized_value, train

    global _task_started
    _task_started = True
    try:
        return optimized_value(cfg, train(cfg))
    except Exception as err:
        status = report_error(err)
        if status is None:
            raise
        sys.exit(status)


def main() -> float | None:
    """Hydra's command line with the project's exit-code contract (sgmse_nc.cli)."""
    from hydra._internal.utils import get_args_parser  # Hydra's own parser: the same options it will read
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from sgmse_nc.cli import USER_ERROR, ArgumentParser, run_main
    from sgmse_nc.config import check_overrides

    parser = get_args_parser()
    parser.prog = PROG
    parser.error = ArgumentParser.error.__get__(parser)  # one `error:` line (status 2) instead of usage + message
    parser.parse_args()
    # The config choices and keys of the overrides, checked before Hydra composes (one line naming the choices).
    # DDP ranks > 0 re-run a command line that rank 0 has checked.
    if os.environ.get("LOCAL_RANK", "0") == "0":
        status = run_main(check_overrides, sys.argv[1:])
        if status:
            sys.exit(status)
    # Without it Hydra prints a composition error in several lines and exits 1; with it the error reaches us.
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        return hydra_main()
    except (HydraException, OmegaConfBaseException) as err:
        if _task_started:
            raise
        print(f"error: {_one_line(err)} (see {PROG} --help)", file=sys.stderr)
        sys.exit(USER_ERROR)
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


def _one_line(err: BaseException) -> str:
    """Hydra's message (and OmegaConf's first line under it), without the config search path it appends."""
    text = str(err).split("Config search path:")[0]
    cause = err.__cause__
    if cause is not None and str(cause).strip() and str(cause).splitlines()[0] not in text:
        text += f": {str(cause).splitlines()[0]}"
    return " ".join(text.split())


if __name__ == "__main__":
    main()
