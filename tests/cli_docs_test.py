"""docs/cli.md names every command and every option the CLI has (the options every
command takes too), and states the rules of exit codes, the pager and colour."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from govsnap import cli

CLI_DOC = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()


def commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Return (full name, command) of every visible leaf command below `group`."""
    found = []
    for name, command in group.commands.items():
        if command.hidden:
            continue
        full = f"{prefix}{name}"
        if hasattr(command, "commands"):
            found.extend(commands(command, full + " "))
        else:
            found.append((full, command))
    return found


def test_every_command_and_option_is_documented() -> None:
    root = cli.command()
    missing = []
    for name, command in commands(root):
        words = name.split()
        if not re.search(rf"### govsnap {re.escape(words[0])}\b", CLI_DOC):
            missing.append(f"command {name}")
        if len(words) > 1 and words[1] not in CLI_DOC:
            missing.append(f"subcommand {name}")
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt != "--help" and opt not in CLI_DOC:
                    stem = opt.rsplit("-", 1)[-1]
                    if opt.startswith("--keep-") and stem in CLI_DOC:
                        continue
                    missing.append(f"{name} {opt}")
    assert missing == []


def test_the_rules_of_output_are_documented() -> None:
    for rule in (
        "**Exit codes.** 0 success; 1 a check failed",
        "2 usage or input\nerror",
        "3 an environment problem",
        "`GIT_PAGER`, then `core.pager`, then `PAGER`",
        "`LESS=FRX` and `LV=-c`",
        "`--no-pager`",
        "unless `NO_COLOR` is set",
        "`--color=always`",
        "`-q/--quiet`",
        "`--wide`",
        "exit code 0, as git does",
    ):
        assert rule in CLI_DOC, rule
