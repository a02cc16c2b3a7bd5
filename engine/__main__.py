"""``python -m engine serve``: start the engine process (JSON lines over stdio)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description="The InstructZero engine process.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="speak the JSON-lines protocol on stdin/stdout")
    args = parser.parse_args(argv)
    if args.command == "serve":
        from engine.server import serve

        return serve()
    return 2


if __name__ == "__main__":
    sys.exit(main())
