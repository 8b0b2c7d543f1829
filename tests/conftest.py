"""Fixtures: real repositories in temporary directories, real throwaway OpenPGP and SSH
keys, a way to run the CLI in-process, and a temporary directory of its own for each
test (the builders they use are in tests/helpers)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import gnupg
import pytest

from govsnap.cli import run
from tests.helpers import Cli, Keys, MakeRepo, Result, SSHKey, git, write_files
from tests.helpers.schemas import check_json_output
from tests.helpers.x509 import X509_DN, X509_EMAIL, make_certificate


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


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `govsnap -C <repo> args...` in-process and capture its output."""

    def invoke(repo: Path, *args: str) -> Result:
        capsys.readouterr()
        code = run(["-C", str(repo), *args])
        captured = capsys.readouterr()
        check_json_output(args, code, captured.out, captured.err)
        return Result(code, captured.out, captured.err)

    return invoke


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


@pytest.fixture(autouse=True)
def own_tmpdir(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Give each test a TMPDIR of its own, for govsnap in-process and every program it
    runs: a test that scans the temporary directory (for what a rehearsal leaves) sees
    only its own run's, whatever runs beside it. A short path: gpg-agent's socket path
    is limited to 108 bytes, and keyrings are made in it."""
    # pytest finds the base of every tmp_path in TMPDIR when first asked: before it moves.
    tmp_path_factory.getbasetemp()
    tmpdir = Path(tempfile.mkdtemp(prefix="gt"))
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    yield tmpdir
    shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture(scope="session")
def x509_cert(isolated_env: Path) -> str:
    """A self-signed signing certificate (X509_DN, X509_EMAIL) in its own GnuPG home,
    isolated_env / "x", whose gpgsm trusts it as a root; return its fingerprint."""
    if shutil.which("gpgsm") is None:
        pytest.skip("gpgsm is not installed (apt-get install gpgsm)")
    return make_certificate(isolated_env / "x", X509_DN, X509_EMAIL)
