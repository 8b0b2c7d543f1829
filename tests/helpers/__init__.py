"""Builders and checks every test module shares (conftest.py holds the fixtures): stock
git, files, what a command printed, snapshots taken through the CLI, the trust policies
and keys tests sign with. Test modules import from here, never from one another;
tamper.py (what an attacker with write access does) and team.py (several people, each
with a keyring) are here too."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Keys:
    """Throwaway OpenPGP keys in a temporary GNUPGHOME."""

    home: Path
    trusted: str  # fingerprint of the key repositories sign with
    other: str  # fingerprint of a second, unrelated key


def public_key(fingerprint: str) -> str:
    """Return the armored public key of a key in the session's keyring, as a trust policy
    carries it (gpg --armor --export)."""
    proc = subprocess.run(
        ["gpg", "--batch", "--armor", "--export", fingerprint], capture_output=True, check=True
    )
    assert proc.stdout, f"no public key {fingerprint} in the keyring"
    return proc.stdout.decode()


def openpgp_signer(
    name: str,
    fingerprint: str,
    environments: Sequence[str] = ("*",),
    operations: Sequence[str] = ("*",),
) -> str:
    """Return a `[signers.NAME]` table of a trust policy for an OpenPGP key of the session's
    keyring, carrying its public key."""
    quote = "'" * 3
    return (
        f"\n[signers.{name}]\nopenpgp = {json.dumps(fingerprint)}\n"
        f"environments = {json.dumps(list(environments))}\n"
        f"operations = {json.dumps(list(operations))}\n"
        f"public_key = {quote}\n{public_key(fingerprint)}{quote}\n"
    )


def git(
    cwd: Path, *args: str, input_text: str | bytes | None = None, stderr_too: bool = False
) -> str:
    """Run stock git in `cwd`, fail the test if it fails, and return its stdout."""
    return git_bytes(cwd, *args, input_data=input_text, stderr_too=stderr_too).decode()


def git_bytes(
    cwd: Path, *args: str, input_data: str | bytes | None = None, stderr_too: bool = False
) -> bytes:
    """Run stock git in `cwd`, fail the test if it fails, and return its raw stdout."""
    data = input_data.encode() if isinstance(input_data, str) else input_data
    proc = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.decode()}")
    return proc.stdout + (proc.stderr if stderr_too else b"")


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    """Write files (creating directories) below `root`."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


MakeRepo = Callable[..., Path]


@dataclass(frozen=True)
class Result:
    """What one CLI run printed and returned."""

    code: int
    out: str
    err: str


Cli = Callable[..., Result]


def govsnap_bin() -> str:
    """Return the installed `govsnap` command (next to the running Python)."""
    candidate = Path(sys.executable).parent / "govsnap"
    return str(candidate) if candidate.exists() else "govsnap"


@dataclass(frozen=True)
class SSHKey:
    """A throwaway SSH signing key and an allowed-signers file naming it."""

    private: Path
    public: Path
    allowed_signers: Path


def snapshot_ids(repo: Path) -> list[str]:
    """Return the ids of the snapshot refs, as stock git lists them."""
    out = git(repo, "for-each-ref", "--format=%(refname:lstrip=3)", "refs/govsnap/snapshots/")
    return out.split()


def all_refs(repo: Path) -> str:
    """Return every ref and its value, as stock git lists them, but for what a clone
    remembers having verified (refs/govsnap-verified/: any command that reads the trust
    policy or the audit trail records it, as ssh records a host key)."""
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return "".join(
        line + "\n" for line in out.splitlines() if not line.startswith("refs/govsnap-verified/")
    )


def run_ok(cli: Cli, repo: Path, *args: str) -> str:
    """Run a command that must succeed; return its stdout."""
    result = cli(repo, *args)
    assert result.code == 0, (args, result.out, result.err)
    return result.out


def create_snapshot(cli: Cli, repo: Path, *args: str) -> str:
    """Take a snapshot with the CLI (`create --json args...`) and return its id."""
    return str(json.loads(run_ok(cli, repo, "create", "--json", *args))["snapshot"]["id"])


def dated(cli: Cli, repo: Path, when: str, *args: str) -> str:
    """Create an unsigned snapshot dated `when` (as `git tag` honours GIT_COMMITTER_DATE)."""
    os.environ["GIT_COMMITTER_DATE"] = when
    try:
        return create_snapshot(cli, repo, "--unsigned", *args)
    finally:
        del os.environ["GIT_COMMITTER_DATE"]


def refs(path: Path, pattern: str) -> dict[str, str]:
    """Return ref -> object under `pattern`, as stock git lists them."""
    out = git(path, "for-each-ref", "--format=%(refname) %(objectname)", pattern)
    return dict(line.split() for line in out.splitlines())


def files_state(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every file and symlink below root (outside .git): kind and mode, and content."""
    state: dict[str, tuple[str, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames + [d for d in dirnames if os.path.islink(Path(dirpath, d))]:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                state[rel] = ("link", os.readlink(path).encode())
            else:
                mode = "x" if os.stat(path).st_mode & stat.S_IXUSR else "f"
                state[rel] = (mode, path.read_bytes())
    return state


# Every byte value: content no text conversion may touch.
BINARY = bytes(range(256)) * 8


def trust_policy(keys: Keys) -> str:
    """A trust policy letting the test key sign and roll back everywhere."""
    return "version = 1\n" + openpgp_signer("releaser", keys.trusted)


@dataclass(frozen=True)
class Shared:
    """A bare remote and two clones of it, both signing with the trusted key."""

    root: Path
    bare: Path
    a: Path
    b: Path

    def clone(self, name: str, url: str | None = None) -> Path:
        """Return a further clone of the remote (or of `url`), signing like the others."""
        path = self.root / name
        git(self.root, "clone", "-q", url or str(self.bare), str(path))
        signing = git(self.a, "config", "govsnap.signingKey").strip()
        git(path, "config", "govsnap.signingKey", signing)
        return path
