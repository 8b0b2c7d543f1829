"""Fixtures: real repositories in temporary directories, real throwaway OpenPGP and SSH
keys, and a way to run the CLI in-process or as the installed command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import gnupg
import pytest

from govsnap.cli import run


@dataclass(frozen=True)
class Keys:
    """Throwaway OpenPGP keys in a temporary GNUPGHOME."""

    home: Path
    trusted: str  # fingerprint of the key repositories sign with
    other: str  # fingerprint of a second, unrelated key


def _gen(gpg: gnupg.GPG, name: str, email: str) -> str:
    params = gpg.gen_key_input(
        key_type="EDDSA",
        key_curve="ed25519",
        key_usage="sign",
        name_real=name,
        name_email=email,
        expire_date=0,
        no_protection=True,
    )
    return str(gpg.gen_key(params).fingerprint)


@pytest.fixture(scope="session", autouse=True)
def isolated_env() -> Iterator[Path]:
    """Give the whole run its own HOME, git config and GNUPGHOME (short path: gpg-agent's
    socket path is limited to 108 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="gs"))
    saved = dict(os.environ)
    home = root / "home"
    home.mkdir()
    gnupg_home = root / "g"
    gnupg_home.mkdir(mode=0o700)
    for key in list(os.environ):
        if key.startswith("GIT_"):
            del os.environ[key]
    os.environ.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GNUPGHOME": str(gnupg_home),
            "COLUMNS": "200",
        }
    )
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test Releaser\n\temail = releaser@example.com\n"
        "[init]\n\tdefaultBranch = main\n"
    )
    # libgit2 fixed its config search path from HOME when pygit2 was imported; point it
    # at the test HOME too, or in-process runs read the machine's ~/.gitconfig.
    import pygit2
    from pygit2.enums import ConfigLevel

    levels = (ConfigLevel.GLOBAL, ConfigLevel.XDG, ConfigLevel.SYSTEM)
    saved_paths = {level: pygit2.settings.search_path[level] for level in levels}
    pygit2.settings.search_path[ConfigLevel.GLOBAL] = str(home)
    pygit2.settings.search_path[ConfigLevel.XDG] = str(home / ".config" / "git")
    pygit2.settings.search_path[ConfigLevel.SYSTEM] = str(root / "no-system-config")
    yield root
    for level, value in saved_paths.items():
        pygit2.settings.search_path[level] = value
    subprocess.run(["gpgconf", "--homedir", str(gnupg_home), "--kill", "all"], check=False)
    os.environ.clear()
    os.environ.update(saved)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def keys(isolated_env: Path) -> Keys:
    """Two OpenPGP signing keys without passphrase."""
    home = Path(os.environ["GNUPGHOME"])
    gpg = gnupg.GPG(gnupghome=str(home))
    return Keys(
        home,
        _gen(gpg, "Test Releaser", "releaser@example.com"),
        _gen(gpg, "Somebody Else", "other@example.com"),
    )


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


@pytest.fixture
def make_repo(tmp_path: Path, keys: Keys) -> MakeRepo:
    """Return a factory of repositories signed with the trusted key.

    make_repo(files={...}, commit=True, signed=True, name="repo") -> path
    """
    counter = iter(range(1000))

    def factory(
        files: dict[str, str | bytes] | None = None,
        *,
        commit: bool = True,
        signed: bool = True,
        name: str | None = None,
    ) -> Path:
        path = tmp_path / (name or f"repo{next(counter)}")
        git(tmp_path, "init", "-q", "-b", "main", str(path))
        if signed:
            git(path, "config", "govsnap.signingKey", keys.trusted)
        write_files(path, files if files is not None else {"README.md": "hello\n"})
        if commit:
            git(path, "add", "-A")
            git(path, "commit", "-q", "-m", "initial")
        return path

    return factory


@pytest.fixture
def repo(make_repo: MakeRepo) -> Path:
    """A repository with one commit and a signing key configured."""
    return make_repo({"README.md": "hello\n", "src/app.py": "print('v1')\n"})


@dataclass(frozen=True)
class Result:
    """What one CLI run printed and returned."""

    code: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `govsnap -C <repo> args...` in-process and capture its output."""

    def invoke(repo: Path, *args: str) -> Result:
        capsys.readouterr()
        code = run(["-C", str(repo), *args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def govsnap_bin() -> str:
    """Return the installed `govsnap` command (next to the running Python)."""
    import sys

    candidate = Path(sys.executable).parent / "govsnap"
    return str(candidate) if candidate.exists() else "govsnap"


@dataclass(frozen=True)
class SSHKey:
    """A throwaway SSH signing key and an allowed-signers file naming it."""

    private: Path
    public: Path
    allowed_signers: Path


@pytest.fixture(scope="session")
def ssh_key(isolated_env: Path) -> SSHKey:
    """An Ed25519 SSH key without passphrase, allowed to sign as releaser@example.com."""
    private = isolated_env / "ssh_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "releaser", "-f", str(private)],
        check=True,
    )
    public = private.with_name("ssh_key.pub")
    allowed = isolated_env / "allowed_signers"
    allowed.write_text(f"releaser@example.com {public.read_text().strip()}\n")
    return SSHKey(private, public, allowed)


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
