"""The `faceswap` command: one sub-parser per stage, each a thin call into the library.

Exit codes: 0 ok; 1 failure (a service down after retries, a crashed worker);
2 bad input or usage (one line on stderr, no traceback); 3 `verify` found no mark.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from faceswap import __version__
from faceswap import config as C
from faceswap.errors import user_error
from faceswap.raycluster import Cluster

EPILOG = "Use only faces of people who agreed to it. Every output is marked as synthetic; check with `faceswap verify`."


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (its default also prints the usage block)."""

    def error(self, message):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--ray-address", default=argparse.SUPPRESS, metavar="ADDR",
                        help="Ray cluster to use, e.g. ray://head:10001 or auto (default: start a local Ray)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="print tracebacks for unexpected failures")

    parser = _Parser(prog="faceswap", description="Face swapping for whole films, at cluster scale, on Ray.",
                     epilog=EPILOG, parents=[common])
    parser.add_argument("--version", action="version", version=f"faceswap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common], epilog=EPILOG)

    p = add("extract", "find, align and save faces from videos, images or folders")
    C.add_arguments(p, C.ExtractConfig)

    p = add("train", "train the shared encoder and the two decoders with Ray Train")
    C.add_arguments(p, C.TrainConfig)

    p = add("convert", "swap faces in a video, blend them back and assemble the film")
    C.add_arguments(p, C.ConvertConfig)

    p = add("assemble", "join the segments of a convert run, add the audio and the provenance marks")
    p.add_argument("work", metavar="WORK", help="the convert work folder (the --work of convert)")
    p.add_argument("--out", required=True, metavar="FILE", help="output video file, local path or s3:// URI")

    p = add("run", "run the whole pipeline (extract both sides, train, convert, assemble) from a config")
    p.add_argument("--config", required=True, metavar="FILE.yaml", help="pipeline config (see examples/pipeline.yaml)")
    _add_run_overrides(p)

    p = add("demo", "make the sample clips and run the whole pipeline on them, locally")
    p.add_argument("--out", default="demo-out", metavar="DIR", help="folder for the samples, store and outputs")
    p.add_argument("--steps", type=int, default=0, metavar="N", help=f"training steps (0: the demo's default, {C.DEMO_STEPS} steps or "
                                                                      f"{C.DEMO_TRAIN_MINUTES:g} minutes of training, whichever "
                                                                      "comes first)")

    p = add("evaluate", "measure a swap: identity, pose, expression, flicker, fidelity, integrity")
    C.add_arguments(p, C.EvaluateConfig)

    p = add("inspect", "compare two face sets' head poses and expressions: what B lacks that A has (and the "
                       "reverse), before training")
    C.add_arguments(p, C.InspectConfig)

    p = add("verify", "tell whether a video is marked as synthetic (exit 0 marked, 3 not marked)")
    p.add_argument("file", metavar="FILE", help="video file, local path or s3:// URI")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--max-frames", type=int, default=128, metavar="N",
                   help="frames checked for the watermark (all of a short clip; runs of 16 spread over a film)")

    p = add("samples", "write the bundled sample clips (public-domain faces, barcodes, audio)")
    p.add_argument("dir", metavar="DIR", help="output folder")
    p.add_argument("--sizes", nargs="+", default=["small"], choices=["small", "720p"], help="which sizes to write")
    return parser


def _add_run_overrides(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pipeline settings (override the config file)")
    for f in C.dataclasses.fields(C.RunConfig):
        if f.name in ("extract", "train", "convert"):
            continue
        if f.type in ("bool", bool):
            g.add_argument(f"--{f.name.replace('_', '-')}", dest=f"run_{f.name}", action=argparse.BooleanOptionalAction,
                           default=argparse.SUPPRESS, help=f.metadata["help"])
        elif "list" in str(f.type):
            g.add_argument(f"--{f.name.replace('_', '-')}", dest=f"run_{f.name}", nargs="+", metavar="URI",
                           default=argparse.SUPPRESS, help=f.metadata["help"])
        else:
            g.add_argument(f"--{f.name.replace('_', '-')}", dest=f"run_{f.name}", metavar="URI",
                           default=argparse.SUPPRESS, help=f.metadata["help"])
    for section, cls in (("extract", C.ExtractConfig), ("train", C.TrainConfig), ("convert", C.ConvertConfig)):
        g = p.add_argument_group(f"{section} settings (--{section}-FIELD)")
        fixed = ("inputs", "out", "a", "b", "video", "faces", "model", "identity")
        C.add_arguments(g, cls, prefix=f"{section}-", skip=fixed)


def _run_config_from_args(args) -> C.RunConfig:
    cfg = C.load_run_config(args.config)
    for f in C.dataclasses.fields(C.RunConfig):
        if hasattr(args, f"run_{f.name}"):
            value = getattr(args, f"run_{f.name}")
            setattr(cfg, f.name, value)
    for section, cls in (("extract", C.ExtractConfig), ("train", C.TrainConfig), ("convert", C.ConvertConfig)):
        getattr(cfg, section).update(C.section_overrides(cls, args, f"{section}-"))
    return cfg


def dispatch(args) -> int:
    """Run one command; returns the exit code."""
    # Made here, connected by the stage once its inputs are checked: bad input fails in a second.
    cluster = Cluster(getattr(args, "ray_address", None))
    cmd = args.command
    if cmd == "samples":
        from faceswap.samples import write_samples

        paths = write_samples(args.dir, sizes=tuple(args.sizes))
        for name, path in sorted(paths.items()):
            print(f"{name}\t{path}")
        return 0
    if cmd == "verify":
        from faceswap.provenance.verify import format_report, verify

        report = verify(args.file, max_frames=args.max_frames)
        print(json.dumps(report, indent=2, sort_keys=True) if args.json else format_report(report))
        return 0 if report["marked"] else 3
    if cmd == "extract":
        cfg = C.from_args(C.ExtractConfig, args)
        from faceswap.stages.extract import run_extract

        run_extract(cfg, cluster=cluster)
        return 0
    if cmd == "train":
        cfg = C.from_args(C.TrainConfig, args)
        from faceswap.stages.train import run_train

        run_train(cfg, cluster=cluster)
        return 0
    if cmd == "convert":
        cfg = C.from_args(C.ConvertConfig, args)
        from faceswap.stages.convert import run_convert

        run_convert(cfg, cluster=cluster)
        return 0
    if cmd == "assemble":
        from faceswap.stages.assemble import run_assemble

        run_assemble(args.work, args.out)
        return 0
    if cmd == "evaluate":
        cfg = C.from_args(C.EvaluateConfig, args)
        from faceswap.stages.evaluate import print_report, run_evaluate

        print_report(run_evaluate(cfg, cluster=cluster))
        return 0
    if cmd == "inspect":
        cfg = C.from_args(C.InspectConfig, args)
        from faceswap.stages.inspect import format_report, run_inspect

        print(format_report(run_inspect(cfg)))
        return 0
    if cmd == "run":
        cfg = _run_config_from_args(args)
        from faceswap.stages.pipeline import run_pipeline

        run_pipeline(cfg, cluster=cluster)
        return 0
    if cmd == "demo":
        from faceswap.stages.pipeline import run_demo

        run_demo(args.out, steps=args.steps, cluster=cluster)
        return 0
    raise AssertionError(f"unhandled command {cmd}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = dispatch(args)
    except KeyboardInterrupt:
        sys.stderr.write("faceswap: interrupted; rerun the same command to resume\n")
        code = 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line and an exit code
        err = user_error(exc)
        if err is not None:
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            sys.stderr.write(f"faceswap: error: {message}\n")
            code = err.exit_code
        else:
            if getattr(args, "debug", False) or os.environ.get("FACESWAP_DEBUG"):
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            sys.stderr.write(f"faceswap: failed: {type(exc).__name__}: {first} (rerun with --debug for details)\n")
            code = 1
    sys.stdout.flush()
    return code


def entry() -> None:
    """The ``faceswap`` command: main() with Ray's native log lines about its own design kept off
    stderr (native_logs; the process's stderr is only swapped here, at its entry point)."""
    from faceswap.native_logs import NativeLogFilter

    with NativeLogFilter():
        code = main()
    sys.exit(code)


if __name__ == "__main__":
    entry()
