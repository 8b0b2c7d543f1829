"""Entry point of `govsnap` and `git-govsnap`."""

from __future__ import annotations

import sys


def main() -> int:
    """Run the command line; `--version` answers before any heavy import."""
    if sys.argv[1:] == ["--version"]:
        from govsnap import __version__

        sys.stdout.write(f"govsnap {__version__}\n")
        return 0
    from govsnap.cli import run

    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
