"""The README: its test command is the one CI runs, its links resolve, and its 60-second
tour runs as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.helpers import govsnap_bin, snapshot_ids

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    test_command = next(b for b in blocks if "pytest" in b)
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert (ROOT / target).exists(), target


def tour() -> list[str]:
    """Return the command lines of the README's 60-second tour, in order."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## A 60-second tour") :]
    block = re.search(r"```sh\n(.*?)\n```", section, flags=re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_tour_runs_verbatim_in_a_fresh_repository(tmp_path: Path) -> None:
    """Each line of the tour, run by bash as written (only `<id>` replaced by the newest
    snapshot's id), succeeds, in a scratch directory with nothing set up beforehand but
    a git identity and an empty, throwaway GnuPG home; a `cd` carries to the next line."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = Tour Taker\n\temail = tour@example.com\n")
    gnupg = Path(tempfile.mkdtemp(prefix="gt"))
    gnupg.chmod(0o700)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GNUPG", "XDG_"))}
    env = {
        **base,
        "HOME": str(home),
        "GNUPGHOME": str(gnupg),
        "GIT_CONFIG_NOSYSTEM": "1",
        "PATH": f"{Path(govsnap_bin()).parent}{os.pathsep}{os.environ['PATH']}",
    }
    cwd = tmp_path / "scratch"
    cwd.mkdir()
    where = tmp_path / "cwd"
    outputs: dict[str, str] = {}
    try:
        for line in tour():
            if "<id>" in line:
                newest = run_line("govsnap list --json", cwd, env, where)
                line = line.replace("<id>", json.loads(newest)["snapshots"][0]["id"])
            outputs[line] = run_line(line, cwd, env, where)
            cwd = Path(where.read_text().strip())
    finally:
        subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], check=False)
        shutil.rmtree(gnupg, ignore_errors=True)
    said = "\n".join(outputs.values())
    assert "PASS: 2 snapshot(s) verified" in said
    assert "Good signature" in said
    assert "rehearsal of snapshot" in said and ": PASS;" in said
    assert "undo with: govsnap rollback" in said
    assert "send 2 snapshot(s)" in said
    demo = tmp_path / "scratch" / "demo"
    assert not (demo / "settings.toml").exists()  # the rollback removed the change
    assert len(snapshot_ids(tmp_path / "scratch" / "demo.git")) == 2


def run_line(line: str, cwd: Path, env: dict[str, str], where: Path) -> str:
    """Run one line with bash in `cwd`; fail the test unless it succeeds; record the
    directory it ends in; return what it printed."""
    script = f"{line}\npwd > {shlex.quote(str(where))}\n"
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"{line}\n{proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr
