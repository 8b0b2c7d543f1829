"""The nine attacks of issue 13, played as an attacker would play them, with real
repositories, real keys, stock git and (for the server-side ones) a bare repository
running govsnap's pre-receive hook. Each failed against govsnap 0.1 and must fail now.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from govsnap.digest import digest_tree
from govsnap.repo import open_repo
from tests.conftest import Cli, Keys, MakeRepo, git, openpgp_signer
from tests.tamper import (
    Template,
    copy_template,
    gpg_sign,
    policy_text,
    read_note,
    read_raw_tag,
    replace_snapshot,
    split_tag,
    template,
    write_note,
)


def trusted_policy(keys: Keys, environments: list[str]) -> str:
    """Return a policy trusting the session's trusted key for `environments`."""
    return policy_text({"releaser": (keys.trusted, environments, ["*"])})


# --- attack 5: the content digest was not injective ----------------------------------------


def test_attack_5_a_newline_in_a_name_no_longer_collides(cli: Cli, make_repo: MakeRepo) -> None:
    """A file named `a\\n100644 <sha256 of Y> b` holding X had the digest of two files a=X
    and b=Y, so `create --if-changed` (and the pre-push hook) skipped a real change."""
    repo = make_repo({"a": "X", "b": "Y"})
    git(repo, "config", "govsnap.requireTrust", "false")
    first = cli(repo, "create", "--from", "HEAD", "--json")
    assert first.code == 0, first.err
    blob_x = git(repo, "rev-parse", "HEAD:a").strip()
    forged_name = b"a\n100644 " + hashlib.sha256(b"Y").hexdigest().encode() + b" b"
    raw = b"100644 " + forged_name + b"\0" + bytes.fromhex(blob_x)
    tree = git(repo, "hash-object", "-t", "tree", "-w", "--stdin", input_text=raw).strip()
    commit = git(repo, "commit-tree", tree, "-p", "HEAD", "-m", "one file, not two").strip()
    again = cli(repo, "create", "--from", commit, "--if-changed", "--json")
    assert again.code == 0, again.err
    data = json.loads(again.out)
    assert data["created"] is True
    assert (
        data["snapshot"]["payload"]["digest"]
        != json.loads(first.out)["snapshot"]["payload"]["digest"]
    )
    assert cli(repo, "verify", "--all").code == 0


def test_a_format_1_snapshot_still_verifies_with_a_warning_about_newlines(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    repo = make_repo({"line\nbreak": "x\n", "plain": "y\n"})
    git(repo, "config", "govsnap.requireTrust", "false")
    made = cli(repo, "create", "--json")
    assert made.code == 0, made.err
    ident = json.loads(made.out)["snapshot"]["id"]
    payload, _ = split_tag(read_raw_tag(repo, ident))
    tree = git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}^{{tree}}").strip()
    old_digest = digest_tree(open_repo(repo), tree, fmt=1).digest
    text = payload.decode()
    new_digest = text.split("Govsnap-Digest: ")[1].split("\n")[0]
    text = text.replace("Govsnap-Format: 2", "Govsnap-Format: 1").replace(new_digest, old_digest)
    signed = text.encode() + gpg_sign(text.encode(), keys.trusted)
    old_id = replace_snapshot(repo, ident, signed, {"digest": old_digest, "format": 1})
    result = cli(repo, "verify", old_id, "--json")
    assert result.code == 0, result.out + result.err
    digest_check = json.loads(result.out)["snapshots"][0]["checks"]["digest"]
    assert digest_check["ok"] and "format 1" in digest_check["message"]
    assert "newline" in digest_check["message"]


# --- attack 6: a retired key still minted valid snapshots ----------------------------------


@pytest.fixture(scope="module")
def tpl(isolated_env: Path, keys: Keys) -> Template:
    return template(isolated_env, keys)


def _resigned(
    work: Path, ident: str, edit: Callable[[str], str], key: str, when: int | None
) -> str:
    """Put in place of snapshot `ident` a payload changed by `edit` and signed by `key`
    (at the faked time `when`); return the new snapshot's id."""
    payload, _ = split_tag(read_raw_tag(work, ident))
    text = edit(payload.decode()).encode()
    return replace_snapshot(work, ident, text + gpg_sign(text, key, when))


def _tagger_time(text: str, when: int) -> str:
    return re.sub(r"^(tagger .*> )\d+ ", rf"\g<1>{when} ", text, flags=re.M)


def test_attack_6_an_expired_key_cannot_back_date_its_signature(
    tpl: Template, tmp_path: Path, cli: Cli
) -> None:
    """The key expired days ago; gpg --faked-system-time signs with a date before its
    expiry, on a payload dated now. The signature predates the snapshot it signs: bad."""
    work = copy_template(tpl, tmp_path / "work")
    now = int(time.time())
    forged = _resigned(
        work, tpl.good, lambda t: _tagger_time(t, now), tpl.keys.expired_after, tpl.keys.t0 + 3600
    )
    result = cli(work, "verify", forged, "--json")
    assert result.code == 1, result.out
    checks = json.loads(result.out)["snapshots"][0]["checks"]
    assert not checks["signature"]["ok"]
    assert "back-dated signature" in checks["signature"]["message"]
    refused = cli(work, "rollback", forged, "--dry-run")
    assert refused.code == 1 and forged in refused.err
    # The same key's honest snapshot, signed and dated before it expired, still verifies.
    assert cli(work, "verify", tpl.expired_after).code == 0


# --- attack 7: unsigned data reached decisions and the screen ------------------------------


def test_attack_7_an_edited_cache_row_changes_nothing_rollback_writes(
    cli: Cli, make_repo: MakeRepo
) -> None:
    repo = make_repo({"app.py": "v1\n"})
    git(repo, "config", "govsnap.requireTrust", "false")
    made = cli(repo, "create", "--json")
    ident = json.loads(made.out)["snapshot"]["id"]
    assert cli(repo, "list").code == 0  # the parsed tag is cached now
    evil = git(repo, "hash-object", "-w", "--stdin", input_text="rm -rf /\n").strip()
    evil_tree = git(repo, "mktree", input_text=f"100644 blob {evil}\tevil.sh\n").strip()
    tag = bytes.fromhex(git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip())
    db = sqlite3.connect(repo / ".git" / "govsnap" / "digest-cache.sqlite")
    (row,) = db.execute("SELECT value FROM parsed WHERE oid = ?", (tag,)).fetchone()
    values, signature = marshal.loads(row)
    forged = (*values[:5], evil_tree, *values[6:])
    db.execute(
        "UPDATE parsed SET value = ? WHERE oid = ?", (marshal.dumps((forged, signature)), tag)
    )
    db.commit()
    db.close()
    (repo / "app.py").write_text("v2\n")
    done = cli(repo, "rollback", ident, "--yes")
    assert done.code == 0, done.err
    assert not (repo / "evil.sh").exists()
    assert (repo / "app.py").read_text() == "v1\n"
    shown = json.loads(cli(repo, "show", ident, "--json").out)
    assert shown["payload"]["tree"] != evil_tree


def test_attack_7_list_and_show_never_present_a_copied_note_as_the_signer(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    # The other key is known to the policy, for staging only: its signature checks out.
    policy = trusted_policy(keys, ["*"]) + openpgp_signer("dev", keys.other, ["staging"])
    repo = make_repo({"app.py": "v1\n", ".govsnap/trust.toml": policy})
    git(repo, "config", "govsnap.signingKey", keys.other)
    made = cli(repo, "create", "--json")
    ident = json.loads(made.out)["snapshot"]["id"]
    tag = git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip()
    note = read_note(repo, tag)
    write_note(repo, tag, {**note, "signature": {"kind": "openpgp", "signer": keys.trusted}})
    listed = cli(repo, "list")
    assert listed.code == 0
    assert (
        "signer (unverified)" in listed.out
        and f"claimed openpgp:{keys.trusted[-16:]}" in listed.out
    )
    shown = cli(repo, "show", ident)
    signed_by = next(line for line in shown.out.splitlines() if line.startswith("signed by"))
    assert keys.other in signed_by and keys.trusted not in signed_by
    assert "FAIL" in signed_by and "is not trusted for environment 'default'" in signed_by
    data = json.loads(cli(repo, "show", ident, "--json").out)["verified"]
    assert data["signer"] == keys.other and not data["trust"]["ok"]


def test_attack_7_markup_and_control_characters_never_reach_the_terminal(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    repo = make_repo({"app.py": "v1\n"})
    git(repo, "config", "govsnap.requireTrust", "false")
    made = cli(repo, "create", "--json")
    ident = json.loads(made.out)["snapshot"]["id"]
    tag = git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip()
    note = read_note(repo, tag)
    hostile = "[/]\x1b[2J\u202egnp.exe"
    write_note(
        repo, tag, {**note, "signature": {"kind": "openpgp", "signer": hostile}, "host": hostile}
    )
    for args in (
        ["list"],
        ["show", ident],
        ["audit"],
        ["list", "--json"],
        ["show", ident, "--json"],
    ):
        result = cli(repo, *args)
        assert result.code == 0, (args, result.err)
        for text in (result.out, result.err):
            assert "\x1b" not in text and "\u202e" not in text, args
    assert "[/]" in cli(repo, "show", ident).out


def test_attack_7_signed_names_outside_the_grammar_fail_verification(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    """A key trusted only for `staging-*` signs `staging-<ESC>[8Dproduction`, which a
    terminal shows as "production": the signature is real, the name is refused."""
    repo = make_repo({"app.py": "v1\n", ".govsnap/trust.toml": trusted_policy(keys, ["staging-*"])})
    made = cli(repo, "create", "-e", "staging-eu", "--json")
    assert made.code == 0, made.err
    good = json.loads(made.out)["snapshot"]["id"]
    hostile_values = [
        "staging-\x1b[8Dproduction",
        "staging-..",
        "staging-*",
        "staging-\u0430",
        "staging-" + "x" * 200_000,
    ]
    for value in hostile_values:
        forged = _resigned(
            repo, good, lambda t, v=value: t.replace("staging-eu", v), keys.trusted, None
        )
        result = cli(repo, "verify", forged, "--json")
        assert result.code == 1
        checks = json.loads(result.out)["snapshots"][0]["checks"]
        assert not checks["tag"]["ok"] and "malformed" in checks["tag"]["message"]
        listed = cli(repo, "list")
        assert listed.code == 0 and "\x1b" not in listed.out
        good = forged  # replace_snapshot moved the note along


def test_attack_7_future_tagger_times(cli: Cli, make_repo: MakeRepo, keys: Keys) -> None:
    repo = make_repo({"app.py": "v1\n", ".govsnap/trust.toml": trusted_policy(keys, ["*"])})
    base = json.loads(cli(repo, "create", "--json").out)["snapshot"]["id"]
    in_2090 = _resigned(repo, base, lambda t: _tagger_time(t, 3_786_912_000), keys.trusted, None)
    result = cli(repo, "verify", in_2090, "--json")
    assert result.code == 1
    assert "in the future" in json.loads(result.out)["snapshots"][0]["checks"]["tag"]["message"]
    # `latest` is the newest snapshot not dated in the future.
    second = json.loads(cli(repo, "create", "--json").out)["snapshot"]["id"]
    assert json.loads(cli(repo, "show", "latest", "--json").out)["id"] == second
    # Beyond year 9999: shown, never a crash.
    far = _resigned(
        repo, in_2090, lambda t: _tagger_time(t, 253_402_300_800 * 4), keys.trusted, None
    )
    for args in (
        ["list"],
        ["show", far],
        ["stats"],
        ["prune", "--keep-last", "1", "--dry-run"],
        ["audit"],
    ):
        done = cli(repo, *args)
        assert "internal error" not in done.err, (args, done.err)
        assert done.code == 0, (args, done.err)
    # create refuses to date a snapshot in the future.
    os.environ["GIT_COMMITTER_DATE"] = "@3786912000"
    try:
        refused = cli(repo, "create")
    finally:
        del os.environ["GIT_COMMITTER_DATE"]
    assert refused.code == 2 and "in the future" in refused.err
