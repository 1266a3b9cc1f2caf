"""The ``keras-se`` command line: argument parsing and one library call per subcommand.

User mistakes (bad flags, unknown names, unusable paths) print one line on stderr
and exit with code 2; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import sys


class UsageError(Exception):
    """A user mistake the CLI reports in one line (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def _cmd_info(args):
    from keras_se import info

    print(info.format_info(info.collect_info(devices=not args.no_devices)))
    return 0


def _cmd_export(args):
    from keras_se import export

    result = export.export_model(
        args.source,
        args.base,
        name=args.name,
        version=args.version,
        with_excitations=args.with_excitations,
        top_k=args.top_k,
        dynamic_size=args.dynamic_size,
    )
    print(export.format_result(result))
    return 0


def build_parser():
    parser = _Parser(
        prog="keras-se",
        description="Squeeze-and-Excitation networks for Keras 3: build, train, tune, export, analyse.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "info", help="versions, Keras backend, devices, registered models and layers"
    )
    p.add_argument("--no-devices", action="store_true", help="skip listing devices (faster)")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "export", help="SavedModel for TF Serving: BASE/NAME/VERSION/, written atomically"
    )
    p.add_argument(
        "source", metavar="RUN_DIR_OR_MODEL", help="training run directory or .keras file"
    )
    p.add_argument("--base", default="models", help="TF Serving base directory (default: models)")
    p.add_argument("--name", help="model name (default: the run's model name or the file's stem)")
    p.add_argument("--version", type=int, help="version number (default: the next one)")
    p.add_argument(
        "--with-excitations", action="store_true", help="add the `excitations` signature"
    )
    p.add_argument("--top-k", type=int, metavar="K", help="add top_k_* outputs with K classes")
    p.add_argument(
        "--dynamic-size", action="store_true", help="accept any H/W; resize inside the graph"
    )
    p.set_defaults(func=_cmd_export)
    return parser


def main(argv=None):
    """Entry point of the ``keras-se`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, PermissionError) as err:
        # Library argument errors name the argument and the value: print them as one line.
        message = " ".join(str(err).split())
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
