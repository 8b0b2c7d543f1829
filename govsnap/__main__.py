"""Entry point of `govsnap` and `git-govsnap`."""

from __future__ import annotations

import os
import sys
import time


def _age() -> float:
    """Return how long ago this process started (Linux: /proc; elsewhere 0): Python's own
    start-up is part of the user's wait."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            return max(0.0, float(uptime.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


# Before any other import: the elapsed time a command reports is what `time` says.
STARTED = time.monotonic() - _age()


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

    return run(sys.argv[1:], STARTED)


if __name__ == "__main__":
    sys.exit(main())
