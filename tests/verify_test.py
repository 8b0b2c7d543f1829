"""The seven checks against real repositories: each tamper kind (a)-(j) is caught by the
right check with a clear message; the `verify` command's report, exit codes, parallel
runs and the verdict recorded in the note."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from govsnap.repo import open_repo
from govsnap.store import CreateOptions, create, list_snapshots, resolve
from govsnap.verify import CHECKS, SnapshotVerification, verify_snapshot, verify_snapshots
from tests.helpers import Cli, Keys, MakeRepo, git, write_files
from tests.helpers.tamper import (
    Template,
    commit_policy,
    copy_template,
    gpg_sign,
    policy_text,
    read_note,
    read_raw_tag,
    replace_snapshot,
    snapshot_ref,
    split_tag,
    tag_oid,
    template,
    write_note,
)


@pytest.fixture(scope="session")
def tpl(isolated_env: Path, keys: Keys) -> Template:
    """The template repository, built once."""
    return template(isolated_env, keys)


@pytest.fixture
def work(tpl: Template, tmp_path: Path) -> Path:
    """A private copy of the template repository to tamper with."""
    return copy_template(tpl, tmp_path / "work")


def verify_id(repo_path: Path, ident: str, **kwargs: object) -> SnapshotVerification:
    repo = open_repo(repo_path)
    return verify_snapshot(repo, resolve(repo, ident), **kwargs)  # type: ignore[arg-type]


def failing(result: SnapshotVerification) -> set[str]:
    return {c.name for c in result.checks if not c.ok}


def test_an_untouched_snapshot_passes_every_check(work: Path, tpl: Template, keys: Keys) -> None:
    result = verify_id(work, tpl.good)
    assert result.ok, result.failures()
    assert [c.name for c in result.checks] == list(CHECKS)
    assert result.signer == keys.trusted
    assert result.check("trust").message == (
        f"signer releaser ({keys.trusted}) may create in 'production'"
    )
    assert result.failures() == []


def test_a_ref_moved_to_another_snapshots_tag(work: Path, tpl: Template) -> None:
    git(work, "update-ref", snapshot_ref(tpl.good), tag_oid(work, tpl.second))
    result = verify_id(work, tpl.good)
    assert failing(result) == {"id"}
    assert result.check("id").message == (
        f"the ref names {tpl.good} but the tag's payload hashes to {tpl.second}: "
        "the ref was moved to another tag"
    )


def test_b_payload_edited_and_re_signed_by_an_untrusted_key(
    work: Path, tpl: Template, keys: Keys
) -> None:
    payload, _ = split_tag(read_raw_tag(work, tpl.good))
    edited = payload.replace(b"Govsnap-Environment: production", b"Govsnap-Environment: staging")
    edited = edited.replace(b", production)", b", staging)")
    edited = edited.replace(b"tag govsnap/production/", b"tag govsnap/staging/")
    new_id = replace_snapshot(
        work, tpl.good, edited + gpg_sign(edited, keys.other), {"environment": "staging"}
    )
    result = verify_id(work, new_id)
    # Signatures are checked against the policy's keys only: a key it does not carry
    # cannot be checked at all, which is not the same as a bad signature.
    assert failing(result) == {"signature", "trust"}
    assert result.check("signature").message == (
        f"cannot check: no public key for {keys.other} in refs/heads/main:.govsnap/trust.toml "
        f"(add it: govsnap trust add-signer NAME --key {keys.other}, then approve and commit "
        "the policy)"
    )


def test_c_payload_edited_without_re_signing(work: Path, tpl: Template) -> None:
    payload, signature = split_tag(read_raw_tag(work, tpl.good))
    edited = payload.replace(b"Govsnap-Environment: production", b"Govsnap-Environment: staging")
    edited = edited.replace(b", production)", b", staging)")
    edited = edited.replace(b"tag govsnap/production/", b"tag govsnap/staging/")
    new_id = replace_snapshot(work, tpl.good, edited + signature, {"environment": "staging"})
    result = verify_id(work, new_id)
    assert failing(result) == {"signature", "trust"}
    assert re.fullmatch(
        r"BAD signature from key [0-9A-F]{16}: the payload changed after signing",
        result.check("signature").message,
    )
    assert result.check("trust").message == "no verified signer to look up (see signature)"
    assert result.signer is None


def test_d_signature_block_removed(work: Path, tpl: Template) -> None:
    payload, _ = split_tag(read_raw_tag(work, tpl.good))
    same_id = replace_snapshot(work, tpl.good, payload)
    assert same_id == tpl.good  # the id covers the payload only
    result = verify_id(work, tpl.good)
    assert failing(result) == {"signature", "trust"}
    assert result.check("signature").message == "unsigned: the tag carries no signature"


def test_e_note_edited(work: Path, tpl: Template) -> None:
    tag = tag_oid(work, tpl.good)
    note = read_note(work, tag)
    write_note(work, tag, {**note, "environment": "staging", "pinned": True})
    result = verify_id(work, tpl.good)
    assert failing(result) == {"note"}
    assert result.check("note").message == (
        "tampered metadata: the note disagrees with the signed payload on "
        "environment (note 'staging', signed 'production')"
    )
    # The note is an unsigned claim: a warning beside the verdict, never part of it.
    assert result.ok and result.failures() == []
    assert result.warnings() == [f"note: {result.check('note').message}"]


def test_e_note_lacking_signed_fields_or_missing(work: Path, tpl: Template) -> None:
    tag = tag_oid(work, tpl.good)
    note = read_note(work, tag)
    del note["digest"], note["labels"]
    write_note(work, tag, note)
    result = verify_id(work, tpl.good)
    assert failing(result) == {"note"}
    assert result.check("note").message == "tampered metadata: the note lacks digest, labels"
    git(work, "notes", "--ref=govsnap", "remove", tag)
    result = verify_id(work, tpl.good)
    assert result.check("note").message == "the snapshot has no note: its metadata is missing"
    assert result.ok


def test_f_tree_swapped_so_the_digest_no_longer_matches(
    work: Path, tpl: Template, keys: Keys
) -> None:
    raw = read_raw_tag(work, tpl.good)
    payload, _ = split_tag(raw)
    old_commit = git(work, "rev-parse", f"{snapshot_ref(tpl.good)}^{{commit}}").strip()
    old_tree = git(work, "rev-parse", f"{old_commit}^{{tree}}").strip()
    listing = git(work, "ls-tree", old_tree)
    blob = git(work, "hash-object", "-w", "--stdin", input_text="not what was signed\n").strip()
    new_tree = git(work, "mktree", input_text=listing + f"100644 blob {blob}\tevil.txt\n").strip()
    new_commit = git(work, "commit-tree", new_tree, "-m", "swapped").strip()
    swapped = payload.replace(old_commit.encode(), new_commit.encode()).replace(
        old_tree.encode(), new_tree.encode()
    )
    # Signed by the trusted key: only the digest can tell the content is not the signed one.
    new_id = replace_snapshot(
        work,
        tpl.good,
        swapped + gpg_sign(swapped, keys.trusted),
        {"commit": new_commit, "tree": new_tree},
    )
    result = verify_id(work, new_id)
    assert failing(result) == {"digest"}
    assert re.fullmatch(
        r"the tree's content digest sha256:[0-9a-f]{15}… differs from the signed "
        r"sha256:[0-9a-f]{15}…: the content is not what was signed",
        result.check("digest").message,
    )


def test_tag_pointing_at_a_commit_with_another_tree(work: Path, tpl: Template, keys: Keys) -> None:
    payload, _ = split_tag(read_raw_tag(work, tpl.good))
    old_commit = git(work, "rev-parse", f"{snapshot_ref(tpl.good)}^{{commit}}").strip()
    other = git(work, "commit-tree", "HEAD^{tree}", "-m", "other tree").strip()
    moved = payload.replace(old_commit.encode(), other.encode())
    new_id = replace_snapshot(
        work, tpl.good, moved + gpg_sign(moved, keys.trusted), {"commit": other}
    )
    result = verify_id(work, new_id)
    assert "tag" in failing(result)
    assert "is not the signed Govsnap-Tree" in result.check("tag").message


def test_g_blob_deleted_from_the_object_store(work: Path, tpl: Template) -> None:
    tree = f"{snapshot_ref(tpl.good)}^{{tree}}"
    blob = git(work, "rev-parse", f"{tree}:{tpl.unique_file}").strip()
    (work / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    result = verify_id(work, tpl.good)
    # The digest cache still knows the content, so only the object check can tell.
    assert failing(result) == {"objects"}
    assert result.check("objects").message == f"missing: blob {blob} ({tpl.unique_file})"
    deep = verify_id(work, tpl.good, deep=True)
    assert failing(deep) == {"objects", "digest"}
    assert deep.check("digest").message == (
        f"cannot recompute the digest: blob {blob} ({tpl.unique_file}) is missing"
    )


def test_h_signer_trusted_but_not_for_this_environment(
    work: Path, tpl: Template, keys: Keys
) -> None:
    commit_policy(
        work, policy_text({"releaser": (keys.trusted, ["staging"], ["create", "rollback"])})
    )
    result = verify_id(work, tpl.good)
    assert failing(result) == {"trust"}
    assert result.check("trust").message == (
        f"signer releaser ({keys.trusted}) is not trusted for environment 'production' "
        "(trusted for: staging)"
    )


def test_i_expired_key(work: Path, tpl: Template) -> None:
    result = verify_id(work, tpl.expired_before)
    assert failing(result) == {"signature", "trust"}
    key = tpl.keys.expired_before
    assert re.fullmatch(
        rf"key {key} had expired \(\d{{4}}-\d\d-\d\d [\d:]+Z\) when it signed "
        r"\(\d{4}-\d\d-\d\d [\d:]+Z\)",
        result.check("signature").message,
    )


def test_a_key_that_expired_after_signing_still_verifies(work: Path, tpl: Template) -> None:
    result = verify_id(work, tpl.expired_after)
    assert result.ok, result.failures()
    assert result.check("signature").message.startswith(
        f"good openpgp signature by {tpl.keys.expired_after}, made before the key expired"
    )


def test_j_revoked_key(work: Path, tpl: Template) -> None:
    result = verify_id(work, tpl.revoked)
    assert failing(result) == {"signature", "trust"}
    assert result.check("signature").message == f"key {tpl.keys.revoked} has been revoked"


def test_operation_needs_the_signer_to_be_allowed_it(work: Path, tpl: Template, keys: Keys) -> None:
    commit_policy(work, policy_text({"releaser": (keys.trusted, ["*"], ["create"])}))
    assert verify_id(work, tpl.good).ok
    result = verify_id(work, tpl.good, operation="rollback")
    assert failing(result) == {"trust"}
    assert result.check("trust").message == (
        f"signer releaser ({keys.trusted}) may not rollback (allowed operations: create)"
    )


def test_missing_tag_object_fails_every_check_without_a_crash(work: Path, tpl: Template) -> None:
    tag = tag_oid(work, tpl.good)
    (work / ".git" / "objects" / tag[:2] / tag[2:]).unlink()
    repo = open_repo(work)
    snap = next(s for s in list_snapshots(repo) if s.id == tpl.good)
    result = verify_snapshot(repo, snap)
    assert failing(result) == set(CHECKS)
    assert result.check("signature").message == f"cannot read the tag: tag object {tag} is missing"


def test_the_working_tree_policy_cannot_grant_trust(work: Path, tpl: Template, keys: Keys) -> None:
    commit_policy(work, policy_text({"releaser": (keys.trusted, ["staging"], ["create"])}))
    write_files(
        work,
        {".govsnap/trust.toml": policy_text({"releaser": (keys.trusted, ["*"], ["create"])})},
    )
    assert failing(verify_id(work, tpl.good)) == {"trust"}


def test_policy_read_from_the_configured_ref(work: Path, tpl: Template, keys: Keys) -> None:
    git(work, "checkout", "-q", "-b", "governance")
    commit_policy(work, policy_text({"releaser": (keys.trusted, ["staging"], ["create"])}))
    git(work, "checkout", "-q", "main")
    assert verify_id(work, tpl.good).ok
    git(work, "config", "govsnap.trustRef", "refs/heads/governance")
    assert failing(verify_id(work, tpl.good)) == {"trust"}


def test_no_policy_fails_trust_unless_not_required(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    repo = make_repo()
    assert cli(repo, "create", "-e", "production").code == 0
    first = cli(repo, "verify", "latest")
    assert first.code == 1
    assert (
        "trust: no trust policy: refs/heads/main:.govsnap/trust.toml does not exist; write one "
        "with `govsnap trust init`"
    ) in first.out
    assert "requireTrust" not in first.out
    git(repo, "config", "govsnap.requireTrust", "false")
    second = cli(repo, "verify", "latest", "--json")
    assert second.code == 0, second.out
    data = json.loads(second.out)
    checks = data["snapshots"][0]["checks"]
    assert checks["trust"] == {
        "ok": True,
        "message": "no trust policy (govsnap.requireTrust=false)",
    }


# --- the command --------------------------------------------------------------------------


def test_verify_command_reports_each_check_and_records_the_verdict(
    cli: Cli, work: Path, tpl: Template, keys: Keys
) -> None:
    audit_before = git(work, "rev-list", "--count", "refs/govsnap/audit").strip()
    result = cli(work, "verify", tpl.good, tpl.revoked)
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0].split() == ["snapshot", *CHECKS, "verdict", "signer"]
    assert lines[1].split() == [tpl.good, *["ok"] * 8, keys.trusted]
    assert lines[2].split() == [
        tpl.revoked,
        "ok",
        "ok",
        "FAIL",
        "FAIL",
        "ok",
        "ok",
        "ok",
        "FAIL",
        "-",
    ]
    assert f"{tpl.revoked} signature: key {tpl.keys.revoked} has been revoked" in result.out
    assert result.out.strip().splitlines()[-1].startswith("FAIL: 1 of 2 snapshot(s) failed")
    good_note = read_note(work, tag_oid(work, tpl.good))["verification"]
    assert isinstance(good_note, dict)
    assert good_note["verdict"] == "pass" and good_note["signer"] == keys.trusted
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(good_note["time"]))
    bad_note = read_note(work, tag_oid(work, tpl.revoked))["verification"]
    assert isinstance(bad_note, dict)
    assert (bad_note["verdict"], bad_note["signer"]) == ("fail", None)
    assert int(git(work, "rev-list", "--count", "refs/govsnap/audit")) == int(audit_before) + 1
    assert git(work, "log", "-1", "--format=%s", "refs/govsnap/audit").startswith(
        "verify: 2 snapshot(s): 1 passed, 1 failed"
    )


def test_verify_json_and_exit_codes(cli: Cli, work: Path, tpl: Template) -> None:
    result = cli(work, "verify", "--all", "--json")
    assert result.code == 1
    data = json.loads(result.out)
    verdicts = {s["id"]: s["verdict"] for s in data["snapshots"]}
    assert verdicts == {
        tpl.good: "pass",
        tpl.second: "pass",
        tpl.expired_after: "pass",
        tpl.other: "fail",
        tpl.expired_before: "fail",
        tpl.revoked: "fail",
    }
    assert data["verdict"] == "fail" and data["failed"] == 3 and data["verified"] == 6
    assert set(data["snapshots"][0]["checks"]) == set(CHECKS)
    ok = cli(work, "verify", tpl.good, tpl.second, "--json")
    assert ok.code == 0 and json.loads(ok.out)["verdict"] == "pass"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name the snapshots to verify, or pass --all (or --environment)"),
        (("latest", "--all"), "name snapshots or pass --all, not both"),
        (("ffffffffff",), "no snapshot matches 'ffffffffff'"),
        (("not-a-name",), "'not-a-name' is not a snapshot name"),
    ],
)
def test_verify_bad_input_exits_2_with_one_line(
    cli: Cli, work: Path, args: tuple[str, ...], message: str
) -> None:
    result = cli(work, "verify", *args)
    assert result.code == 2
    assert result.err.startswith(f"govsnap: error: {message}")
    assert len(result.err.strip().splitlines()) == 1


def test_verify_jobs_must_be_positive(cli: Cli, work: Path) -> None:
    result = cli(work, "verify", "--all", "--jobs", "0")
    assert result.code == 2
    assert "--jobs" in result.err


def test_environment_selects_and_guards(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo()
    git(repo, "config", "govsnap.requireTrust", "false")
    for n, env in enumerate(("staging", "production", "staging")):
        assert cli(repo, "create", "-e", env, "-m", f"number {n}").code == 0
    data = json.loads(cli(repo, "verify", "-e", "staging", "--json").out)
    assert data["verified"] == 2
    ids = [s["id"] for s in data["snapshots"]]
    repo_obj = open_repo(repo)
    assert {resolve(repo_obj, i).environment for i in ids} == {"staging"}
    production = next(s.id for s in list_snapshots(repo_obj) if s.environment == "production")
    wrong = cli(repo, "verify", production, "-e", "staging")
    assert wrong.code == 2
    assert wrong.err == (
        f"govsnap: error: snapshot {production} belongs to environment 'production', "
        "not 'staging'\n"
    )


def test_parallel_and_serial_runs_agree(
    make_repo: MakeRepo, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from govsnap import verify

    # 40 snapshots are too few to be worth two workers; they are made to take them.
    monkeypatch.setattr(verify, "_MIN_PER_JOB", 16)
    path = make_repo({"a.txt": "a\n", "dir/b.txt": "b\n"})
    repo = open_repo(path)
    for n in range(40):
        write_files(path, {"dir/b.txt": f"b{n}\n"})
        create(repo, CreateOptions(environment="production", message=f"n{n}"))
    commit_policy(path, policy_text({"releaser": (keys.trusted, ["*"], ["create"])}))
    tag = tag_oid(path, list_snapshots(repo)[5].id)
    write_note(path, tag, {**read_note(path, tag), "trigger": "forged"})
    snaps = list_snapshots(repo)
    serial = verify_snapshots(repo, snaps, jobs=1)
    parallel = verify_snapshots(repo, snaps, jobs=2)
    assert parallel == serial
    assert [r.id for r in parallel] == [s.id for s in snaps]
    assert [r.warnings() for r in parallel if r.warnings()] == [
        [
            "note: tampered metadata: the note disagrees with the signed payload on "
            "trigger (note 'forged', signed 'manual')"
        ]
    ]


def test_deep_rereads_every_blob(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo({"big.bin": b"x" * 100_000})
    git(repo, "config", "govsnap.requireTrust", "false")
    assert cli(repo, "create").code == 0
    result = cli(repo, "verify", "latest", "--deep", "--json")
    assert result.code == 0
    assert json.loads(result.out)["deep"] is True
