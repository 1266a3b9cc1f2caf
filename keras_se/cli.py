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
