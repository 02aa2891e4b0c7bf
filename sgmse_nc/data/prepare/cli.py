"""One command for every corpus preparation and test-set builder:

    python -m sgmse_nc.data.prepare vbdmd --src <official VoiceBank-DEMAND download> --dst <root> [--jobs 4]
    python -m sgmse_nc.data.prepare ears_wham --src <EARS-WHAM> --noise <WHAM48kHz>/high_res_wham/audio --dst <root>
    python -m sgmse_nc.data.prepare esc50 --esc50 <ESC-50-master> --clean <vbdmd>/test/clean --out <set>
    python -m sgmse_nc.data.prepare nonstationary --clean <vbdmd>/test/clean --out <set> [--noise <DEMAND>]

A known problem (missing or malformed input, an output folder made with other parameters, ...) ends the run
with one `error: ...` line naming the file and the fix, and exit code 2. Another corpus is added as an entry
of `SUBCOMMANDS`: a module with `add_arguments(parser)` and `run(args) -> summary` (which prints it).
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Callable

import torch

from sgmse_nc.data.prepare import ears_wham, esc50, nonstationary, vbdmd
from sgmse_nc.cli import ArgumentParser, run_main


@dataclass(frozen=True)
class Subcommand:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict]


SUBCOMMANDS: dict[str, Subcommand] = {
    "vbdmd": Subcommand("VoiceBank-DEMAND from the official download", vbdmd.add_arguments, vbdmd.run),
    "ears_wham": Subcommand("EARS-WHAM (48 kHz) from the sp-uhh/ears_benchmark release, references from WHAM!",
                            ears_wham.add_arguments, ears_wham.run),
    "esc50": Subcommand("ESC-50 out-of-distribution test sets (clean test speech + ESC-50 clips)",
                        esc50.add_arguments, esc50.run),
    "nonstationary": Subcommand("non-stationary noise test sets (concatenated types, varying SNR, events)",
                                nonstationary.add_arguments, nonstationary.run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="sgmse-prepare", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name, command in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv=None) -> int:
    """The exit status: 0, or 2 with one `error: ...` line for a problem the user can fix (sgmse_nc.cli)."""
    return run_main(_run, argv)


def _run(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
