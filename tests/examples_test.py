"""The examples run end to end with the installed command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script", ["quickstart.sh", "server-setup.sh"])
def test_example_script_runs(script: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
    }
    proc = subprocess.run(
        ["bash", str(EXAMPLES / script)], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "finished" in proc.stdout
    assert "Traceback" not in proc.stderr
