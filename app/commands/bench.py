"""`hsa bench TARGET`: each target's benchmark lives beside the code it measures, as a module with
`add_arguments(parser)` and `run(args) -> int`."""

import argparse
import importlib
import sys

TARGETS = {
    "kernels": ("kernels.bench", "HSA attention, selection and decode vs the PyTorch reference and SDPA"),
    "ingest": ("ingest.bench", "ingest throughput and bytes on disk per token"),
    "app": ("app.bench", "the served app: start-up, first token, concurrent questions via gradio_client"),
}


def _target(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        return None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks (kernels, ingest, app)")
    targets = p.add_subparsers(dest="target", required=True, metavar="TARGET")
    for name, (module_name, help_text) in TARGETS.items():
        module = _target(module_name)
        t = targets.add_parser(name, help=help_text if module else f"{help_text} (not built yet)")
        t.set_defaults(bench_module=module)
        if module is None:
            t.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        else:
            module.add_arguments(t)


def run(args: argparse.Namespace) -> int:
    if args.bench_module is None:
        print(f"hsa bench {args.target}: not built yet", file=sys.stderr)
        return 2
    return args.bench_module.run(args)
