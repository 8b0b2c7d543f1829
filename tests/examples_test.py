"""The examples run end to end with the installed command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script", ["quickstart.sh", "server-setup.sh"])
def test_example_script_runs(script: str) -> None:
    # The scripts make (and remove) their own temporary directories; pytest's are too
    # deep for gpg-agent's socket path limit.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", str(EXAMPLES / script)], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "finished" in proc.stdout
    assert "Traceback" not in proc.stderr
