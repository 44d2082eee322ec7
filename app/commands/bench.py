"""`hsa bench TARGET`: each target's benchmark lives beside the code it measures, as a module with
`add_arguments(parser)` and `run(args) -> int`."""

import argparse
import importlib

TARGETS = {
    "kernels": ("kernels.bench", "HSA attention, selection and decode vs the PyTorch reference and SDPA"),
    "ingest": ("ingest.bench", "ingest throughput and bytes on disk per token"),
    "app": ("app.bench", "the served app: start-up, first token, concurrent questions via gradio_client"),
    "reader": ("hsa_core.bench", "per model: encoding tokens/s, first-token and per-token latency"),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks (kernels, ingest, app, reader)")
    targets = p.add_subparsers(dest="target", required=True, metavar="TARGET")
    for name, (module_name, help_text) in TARGETS.items():
        t = targets.add_parser(name, help=help_text, description=help_text)
        t.set_defaults(bench_module=module_name)
        importlib.import_module(module_name).add_arguments(t)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(args.bench_module).run(args)
