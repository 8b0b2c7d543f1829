"""Run the installed govsnap on a real pseudo-terminal of a given size, as a user's shell
would, and read what it wrote there."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping
from pathlib import Path

from tests.helpers import govsnap_bin


def in_terminal(
    cwd: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    columns: int = 80,
    timeout: float = 60,
) -> tuple[int, str]:
    """Run `govsnap args...` with stdin, stdout and stderr on a terminal `columns` wide;
    return its exit code and everything the terminal received (\\r\\n made \\n)."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    environ.update({"TERM": "xterm", **(env or {})})
    process = subprocess.Popen(
        [govsnap_bin(), *args], cwd=cwd, stdin=side, stdout=side, stderr=side, env=environ
    )
    os.close(side)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.2)
        if ready:
            try:
                data = os.read(main, 65536)
            except OSError:  # the terminal closed: every process on it has ended
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(main)
    code = process.wait(timeout=10)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
