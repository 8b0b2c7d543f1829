"""The server-side pre-receive hook, through real pushes to a bare repository and to a
`git daemon` on 127.0.0.1: good snapshots are accepted; unsigned, untrusted, tampered and
rewritten ones are refused; deletions need a signed push by a signer allowed to prune."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Cli, Keys, MakeRepo, create_snapshot, git, openpgp_signer, write_files
from tests.helpers.tamper import commit_policy

PREFIX = "refs/govsnap/snapshots/"


def policy(keys: Keys) -> str:
    return "version = 1\n" + openpgp_signer(
        "releaser", keys.trusted, ["*"], ["create", "prune", "policy"]
    )


@pytest.fixture
def server(tmp_path: Path, cli: Cli, keys: Keys) -> Path:
    """A bare repository with govsnap's pre-receive hook, its root of trust pinned: the
    trusted key signed the policy's first version."""
    path = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(path))
    git(path, "config", "govsnap.trustAnchor", keys.trusted)
    result = cli(path, "hooks", "install", "--server", "--trust-ref", "refs/heads/main")
    assert result.code == 0, result.err
    assert (path / "hooks" / "pre-receive").is_file()
    return path


@pytest.fixture
def client(make_repo: MakeRepo, server: Path, keys: Keys) -> Path:
    """A clone-like repository whose main (carrying the trust policy, in a commit the
    anchor key signed) is on the server."""
    path = make_repo({"README.md": "v1\n"})
    commit_policy(path, policy(keys), sign_with=keys.trusted)
    git(path, "remote", "add", "origin", str(server))
    pushed = push(path, "origin", "main")
    assert pushed.returncode == 0, pushed.stderr
    return path


def push(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", *args], cwd=repo, capture_output=True, text=True, check=False
    )


def server_ids(server: Path) -> list[str]:
    out = git(server, "for-each-ref", "--format=%(refname:lstrip=3)", PREFIX)
    return out.split()


def test_server_accepts_a_good_snapshot_and_refuses_bad_ones(
    cli: Cli, client: Path, server: Path, keys: Keys
) -> None:
    good = create_snapshot(cli, client, "--from", "HEAD", "--environment", "production")
    done = push(client, "origin", PREFIX + good, "refs/notes/govsnap")
    assert done.returncode == 0, done.stderr
    assert f"remote: govsnap: accepted create of {PREFIX}{good}: verified" in done.stderr
    assert server_ids(server) == [good]
    git(server, "verify-tag", PREFIX + good)

    unsigned = create_snapshot(cli, client, "--from", "HEAD", "--unsigned", "--label", "unsigned")
    refused = push(client, "origin", PREFIX + unsigned)
    assert refused.returncode != 0
    assert f"REFUSED create of {PREFIX}{unsigned}: signature: unsigned" in refused.stderr
    assert "push refused: 1 ref update(s)" in refused.stderr

    git(client, "config", "govsnap.signingKey", keys.other)
    untrusted = create_snapshot(cli, client, "--from", "HEAD", "--label", "untrusted")
    refused = push(client, "origin", PREFIX + untrusted)
    assert refused.returncode != 0
    # The server checks signatures against the policy's keys only: an unknown key
    # cannot even be checked.
    assert f"REFUSED create of {PREFIX}{untrusted}: signature: cannot check: no public key for" in (
        refused.stderr
    )
    assert (
        f"{keys.other} in refs/heads/main:.govsnap/trust.toml (add it: govsnap trust "
        f"add-signer NAME --key {keys.other}, then approve and commit the policy)"
    ) in refused.stderr
    git(client, "config", "govsnap.signingKey", keys.trusted)

    # Tampered: the signed payload edited after signing, pushed under its new id.
    raw = git(client, "cat-file", "tag", PREFIX + good).encode()
    # (everywhere it is named: the tag name carries the environment too)
    forged = raw.replace(b"production", b"staging")
    payload = forged[: forged.index(b"-----BEGIN PGP SIGNATURE-----")]
    forged_id = hashlib.sha256(payload).hexdigest()[:16]
    oid = git(client, "hash-object", "-t", "tag", "-w", "--stdin", input_text=forged).strip()
    git(client, "update-ref", PREFIX + forged_id, oid)
    refused = push(client, "origin", PREFIX + forged_id)
    assert refused.returncode != 0
    assert f"REFUSED create of {PREFIX}{forged_id}: signature:" in refused.stderr

    # A good tag under a name that is not its id.
    good_tag = git(client, "rev-parse", PREFIX + good).strip()
    renamed = push(client, "origin", f"{good_tag}:{PREFIX}0123456789abcdef")
    assert renamed.returncode != 0 and "REFUSED create" in renamed.stderr
    assert "id: the ref names 0123456789abcdef" in renamed.stderr

    # A rewrite of an existing snapshot ref, even with another good snapshot.
    other = create_snapshot(cli, client, "--from", "HEAD", "--label", "other")
    other_tag = git(client, "rev-parse", PREFIX + other).strip()
    rewrite = push(client, "--force", "origin", f"{other_tag}:{PREFIX}{good}")
    assert rewrite.returncode != 0
    assert f"REFUSED rewrite of {PREFIX}{good}: snapshot refs are never rewritten" in (
        rewrite.stderr
    )

    # One bad ref refuses the whole push; the server is exactly as after the good push.
    mixed = push(client, "origin", PREFIX + other, PREFIX + unsigned)
    assert mixed.returncode != 0 and f"accepted create of {PREFIX}{other}" in mixed.stderr
    assert server_ids(server) == [good]
    assert git(server, "rev-parse", PREFIX + good).strip() == good_tag


def test_deletion_needs_an_authorised_prune_entry(
    cli: Cli, client: Path, server: Path, keys: Keys
) -> None:
    ident = create_snapshot(cli, client, "--from", "HEAD", "--environment", "production")
    keep = create_snapshot(
        cli, client, "--from", "HEAD", "--environment", "production", "--label", "keep"
    )
    assert cli(client, "push", "origin").code == 0

    plain = push(client, "origin", f":{PREFIX}{ident}")
    assert plain.returncode != 0
    assert f"REFUSED delete of {PREFIX}{ident}: deleting a snapshot needs a signed prune entry" in (
        plain.stderr
    )
    assert sorted(server_ids(server)) == sorted([ident, keep])

    # A prune here records a signed entry; push --prune sends it with the deletion.
    assert cli(client, "prune", "--id", ident, "--yes", "--no-gc").code == 0
    done = cli(client, "push", "origin", "--prune", "--yes")
    assert done.code == 0, done.err
    assert server_ids(server) == [keep]
    git(server, "fsck", "--full", "--strict")


def test_other_refs_pass_and_the_chained_server_hook_runs_first(
    cli: Cli, client: Path, server: Path
) -> None:
    # Installing again over the server's own hook chains to it.
    assert cli(server, "hooks", "uninstall").code == 0
    own = server / "hooks" / "pre-receive"
    own.write_text("#!/bin/sh\ngrep -q refs/heads/forbidden && exit 1\nexit 0\n")
    own.chmod(0o755)
    assert cli(server, "hooks", "install", "--server").code == 0
    write_files(client, {"x.txt": "x\n"})
    git(client, "add", "x.txt")
    git(client, "commit", "-q", "-m", "x")
    assert push(client, "origin", "main").returncode == 0
    assert push(client, "origin", "main:forbidden").returncode != 0
    assert push(client, "origin", "main:allowed").returncode == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def daemon(server: Path) -> Iterator[str]:
    """A `git daemon` on 127.0.0.1 serving the server's parent directory, receive-pack
    enabled; yields the server's git:// URL and stops the daemon afterwards."""
    base = server.parent
    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--listen=127.0.0.1",
                f"--port={port}",
                f"--base-path={base}",
                "--export-all",
                "--enable=receive-pack",
                str(base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None:
            break
    else:
        pytest.fail("git daemon did not start")
    try:
        yield f"git://127.0.0.1:{port}/{server.name}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def test_pushes_through_git_daemon(cli: Cli, client: Path, server: Path, daemon: str) -> None:
    git(client, "remote", "add", "daemon", daemon)
    good = create_snapshot(cli, client, "--from", "HEAD", "--environment", "production")
    unsigned = create_snapshot(cli, client, "--from", "HEAD", "--unsigned", "--label", "u")
    refused = push(client, "daemon", PREFIX + unsigned)
    assert refused.returncode != 0
    assert f"REFUSED create of {PREFIX}{unsigned}: signature: unsigned" in refused.stderr
    done = push(client, "daemon", PREFIX + good, "refs/notes/govsnap")
    assert done.returncode == 0, done.stderr
    assert f"accepted create of {PREFIX}{good}" in done.stderr
    assert server_ids(server) == [good]
    git(server, "fsck", "--full", "--strict")


def test_a_push_cannot_grant_itself_trust(cli: Cli, client: Path, server: Path, keys: Keys) -> None:
    widened = policy(keys) + openpgp_signer("other", keys.other, ["*"], ["create"])
    write_files(client, {".govsnap/trust.toml": widened.replace("version = 1", "version = 2")})
    git(client, "commit", "-q", "-am", "trust the other key")  # not approved by anyone
    git(client, "config", "govsnap.signingKey", keys.other)
    ident = create_snapshot(cli, client, "--from", "HEAD", "--label", "self-granted")
    refused = push(client, "origin", "main", PREFIX + ident)
    assert refused.returncode != 0
    assert "REFUSED fast-forward of refs/heads/main: the trust policy it brings" in refused.stderr
    assert "with 0 of the 1 approval(s)" in refused.stderr
    assert f"REFUSED create of {PREFIX}{ident}: signature: cannot check: no public key" in (
        refused.stderr
    )
    # The same change approved by a signer allowed 'policy' counts; then the snapshot too.
    git(client, "reset", "-q", "--hard", "HEAD~1")
    commit_policy(client, widened, "trust the other key", sign_with=keys.trusted)
    assert push(client, "origin", "main").returncode == 0
    accepted = push(client, "origin", PREFIX + ident)
    assert accepted.returncode == 0, accepted.stderr
