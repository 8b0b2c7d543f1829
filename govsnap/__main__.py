"""Entry point of `govsnap` and `git-govsnap`."""

from __future__ import annotations

import sys


def main() -> int:
    """Run the command line; `--version` answers before any heavy import."""
    if sys.argv[1:] == ["--version"]:
        from govsnap import __version__

        sys.stdout.write(f"govsnap {__version__}\n")
        return 0
    if sys.argv[1:2] == ["hook-run"]:
        # Hooks run on every push: skip the command-line framework's import.
        from govsnap.commands.hook_run import run_hook

        return run_hook(sys.argv[2:])
    from govsnap.cli import run

    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
