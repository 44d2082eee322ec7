"""The `hsa` subcommands, one module each; what several of them share lives here."""

import argparse


def add_reread_argument(p: argparse.ArgumentParser) -> None:
    """--reread N, for `hsa ask` and `hsa serve` (app/service.py, QAService)."""
    p.add_argument(
        "--reread",
        type=int,
        metavar="N",
        help="a chat model (smollm2-hsa) writes its answer again from its N best evidence chunks placed in "
        "its window, HSA off, and from its best chunk alone, and keeps the answer it is surer of; 0: answer "
        "through HSA (default: 3 for a chat model, 0 for others)",
    )
