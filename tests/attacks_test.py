"""The nine attacks of issue 13, played as an attacker would play them, with real
repositories, real keys, stock git and (for the server-side ones) a bare repository
running govsnap's pre-receive hook. Each failed against govsnap 0.1 and must fail now.
"""

from __future__ import annotations

import hashlib
import json

from govsnap.digest import digest_tree
from govsnap.repo import open_repo
from tests.conftest import Cli, Keys, MakeRepo, git
from tests.tamper import gpg_sign, read_raw_tag, replace_snapshot, split_tag

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
