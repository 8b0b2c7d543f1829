"""Every operation leaves a measurable outcome (issue 18): a failing create in a pre-push
hook, a failing rollback and a slow operation show in `govsnap audit` and in the
Prometheus textfile of `stats --prometheus`, read back with prometheus_client's parser."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import (
    Cli,
    Keys,
    MakeRepo,
    all_refs,
    create_snapshot,
    git,
    run_ok,
    write_files,
)
from tests.helpers.tamper import policy_text

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics(cli: Cli, repo: Path) -> Samples:
    """Run `stats --prometheus` into a file and return its samples, parsed."""
    out = repo.parent / f"{repo.name}.prom"
    run_ok(cli, repo, "stats", "--prometheus", str(out))
    found: Samples = {}
    for family in text_string_to_metric_families(out.read_text(encoding="utf-8")):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found, f"duplicate series {key}"
            found[key] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def audit_entries(cli: Cli, repo: Path) -> list[dict[str, object]]:
    entries = json.loads(run_ok(cli, repo, "audit", "--json"))["entries"]
    assert isinstance(entries, list)
    return entries


def test_a_create_failing_in_pre_push_is_counted(
    cli: Cli, make_repo: MakeRepo, tmp_path: Path
) -> None:
    repo = make_repo({"app.py": "v1\n"})
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "config", "govsnap.environment.main", "production")
    assert cli(repo, "hooks", "install").code == 0
    assert subprocess.run(["git", "push", "-q", "origin", "main"], cwd=repo).returncode == 0
    # The key is gone from the keyring the next time the hook runs.
    git(repo, "config", "govsnap.signingKey", "F" * 40)
    write_files(repo, {"app.py": "v2\n"})
    git(repo, "commit", "-q", "-am", "two")
    blocked = subprocess.run(
        ["git", "push", "origin", "main"], cwd=repo, capture_output=True, text=True
    )
    assert blocked.returncode == 1 and "push blocked" in blocked.stderr

    entries = audit_entries(cli, repo)
    hook = next(e for e in entries if e["operation"] == "pre-push")
    create = next(e for e in entries if e["operation"] == "create")
    assert (hook["operation"], hook["result"]) == ("pre-push", "blocked")
    assert create["operation"] == "create" and create["outcome"] == "failure"
    assert str(create["result"]).startswith("failed: ") and "F" * 40 in str(create["result"])
    assert create["environments"] == hook["environments"] == ["production"]
    body = create["body"]
    assert isinstance(body, dict) and body["arguments"]["hook"] == "pre-push"
    assert "signing_error" in body and create["signature_kind"] == "none"  # no usable key
    # Stock git reads the same entry.
    subject = git(repo, "log", "-1", "--format=%s", "--grep=^create: failed", "refs/govsnap/audit")
    assert subject.startswith("create: failed: ")

    samples = metrics(cli, repo)
    total = "govsnap_operations_total"
    prod = {"environment": "production"}
    assert value(samples, total, operation="create", outcome="success", **prod) == 1
    assert value(samples, total, operation="create", outcome="failure", **prod) == 1
    assert value(samples, total, operation="pre-push", outcome="failure", **prod) == 1
    assert value(samples, "govsnap_operation_last_success", operation="create", **prod) == 0
    last = "govsnap_operation_last_timestamp_seconds"
    failed_at = value(samples, last, operation="create", outcome="failure", **prod)
    succeeded_at = value(samples, last, operation="create", outcome="success", **prod)
    assert failed_at is not None and succeeded_at is not None and failed_at >= succeeded_at


def test_a_failing_rollback_is_counted(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo, "-e", "production")
    (repo / "README.md").write_text("changed\n")
    git(repo, "config", "gpg.program", "/nonexistent/gpg")  # the safety snapshot fails

    result = cli(repo, "rollback", ident, "--yes", "--no-verify")

    assert result.code == 3 and (repo / "README.md").read_text() == "changed\n"
    [rollback] = [e for e in audit_entries(cli, repo) if e["operation"] == "rollback"]
    assert rollback["outcome"] == "failure" and rollback["shared"] is True  # no policy
    assert "cannot take the safety snapshot" in str(rollback["result"])
    assert rollback["environments"] == ["production"]
    samples = metrics(cli, repo)
    prod = {"operation": "rollback", "environment": "production"}
    assert value(samples, "govsnap_operations_total", outcome="failure", **prod) == 1
    assert value(samples, "govsnap_operations_total", outcome="success", **prod) == 0
    assert value(samples, "govsnap_operation_last_success", **prod) == 0
    assert value(samples, "govsnap_operation_sla_seconds", operation="rollback") == 300


def test_a_slow_operation_breaches_its_sla(cli: Cli, repo: Path) -> None:
    git(repo, "config", "govsnap.sla.create", "1ms")  # every create is slower than that
    git(repo, "config", "govsnap.sla.verify", "off")
    ident = create_snapshot(cli, repo, "-e", "staging")
    assert cli(repo, "verify", ident).code == 1  # no trust policy: a failed verification

    verify, create = audit_entries(cli, repo)[:2]
    assert create["sla_seconds"] == 0.001 and create["sla_breached"] is True
    duration = create["duration_seconds"]
    assert isinstance(duration, float) and duration > 0.001
    assert verify["sla_seconds"] is None and verify["sla_breached"] is False
    assert "> SLA 0.001s" in run_ok(cli, repo, "audit")

    samples = metrics(cli, repo)
    staging = {"environment": "staging"}
    breaches = "govsnap_operation_sla_breaches_total"
    assert value(samples, breaches, operation="create", **staging) == 1
    assert value(samples, breaches, operation="verify", **staging) == 0
    assert value(samples, "govsnap_operation_sla_seconds", operation="create") == 0.001
    assert value(samples, "govsnap_operation_sla_seconds", operation="verify") is None
    assert value(samples, "govsnap_operation_sla_seconds", operation="rollback") == 300
    last = value(samples, "govsnap_operation_last_duration_seconds", operation="create", **staging)
    assert last == pytest.approx(duration, abs=1e-6)


def test_a_verification_fails_only_where_a_snapshot_failed(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    policy = policy_text({"releaser": (keys.trusted, ["*"], ["*"])})
    repo = make_repo({"app.py": "v1\n", ".govsnap/trust.toml": policy})
    create_snapshot(cli, repo, "-e", "production")
    create_snapshot(cli, repo, "-e", "staging", "--unsigned")  # fails under a policy
    assert cli(repo, "verify", "--all").code == 1

    [verify] = [e for e in audit_entries(cli, repo) if e["operation"] == "verify"]
    assert verify["outcome"] == "failure" and verify["result"] == "fail"
    assert verify["environments"] == ["production", "staging"]
    assert verify["body"]["outcome"]["failed_in"] == ["staging"]  # type: ignore[index]
    samples = metrics(cli, repo)
    total = "govsnap_operations_total"
    assert (
        value(samples, total, operation="verify", environment="production", outcome="success") == 1
    )
    assert value(samples, total, operation="verify", environment="staging", outcome="failure") == 1
    assert value(samples, total, operation="verify", environment="staging", outcome="success") == 0


def test_the_newest_of_one_second_is_the_last(
    cli: Cli, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries of one second (one committer time) count in the chain's order."""
    monkeypatch.setenv("GIT_COMMITTER_DATE", "@1790000000")
    create_snapshot(cli, repo)
    git(repo, "config", "gpg.program", "/nonexistent/gpg")
    write_files(repo, {"new.txt": "new\n"})
    assert cli(repo, "create").code == 3
    samples = metrics(cli, repo)
    default = {"operation": "create", "environment": "default"}
    assert value(samples, "govsnap_operation_last_success", **default) == 0
    git(repo, "config", "--unset", "gpg.program")
    create_snapshot(cli, repo, "-l", "again")
    samples = metrics(cli, repo)
    assert value(samples, "govsnap_operation_last_success", **default) == 1


@pytest.mark.parametrize("bad", ["fast", "-5", "5 days", "1e3"])
def test_an_unreadable_sla_refuses_before_anything_is_done(cli: Cli, repo: Path, bad: str) -> None:
    git(repo, "config", "govsnap.sla.create", bad)
    before = all_refs(repo)
    result = cli(repo, "create")
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and "govsnap.sla.create" in result.err
    assert all_refs(repo) == before


def test_a_failure_is_signed_when_a_key_is_usable(cli: Cli, repo: Path, tmp_path: Path) -> None:
    git(repo, "remote", "add", "gone", str(tmp_path / "no-such-remote"))
    assert cli(repo, "fetch", "gone").code == 3
    fetch = audit_entries(cli, repo)[0]
    assert (fetch["operation"], fetch["outcome"], fetch["environments"]) == ("fetch", "failure", [])
    assert fetch["signature_kind"] == "openpgp"
    git(repo, "verify-commit", str(fetch["commit"]))
    run_ok(cli, repo, "audit", "verify")


def test_an_unsignable_failure_under_a_trust_policy_stays_in_this_clone(
    cli: Cli, make_repo: MakeRepo, keys: Keys, tmp_path: Path
) -> None:
    """Every remote and peer refuses an unsigned entry once a policy exists: recorded in
    the shared chain, a failure to sign would stop every later push of this clone."""
    policy = policy_text({"releaser": (keys.trusted, ["*"], ["*"])})
    repo = make_repo({"app.py": "v1\n", ".govsnap/trust.toml": policy})
    create_snapshot(cli, repo, "-e", "production")
    shared = git(repo, "rev-parse", "refs/govsnap/audit").strip()
    git(repo, "config", "govsnap.signingKey", "F" * 40)
    assert cli(repo, "create", "-e", "production").code == 3

    assert git(repo, "rev-parse", "refs/govsnap/audit").strip() == shared
    [failure] = [e for e in audit_entries(cli, repo) if not e["shared"]]
    assert (failure["operation"], failure["outcome"]) == ("create", "failure")
    assert "(this clone only)" in run_ok(cli, repo, "audit")
    samples = metrics(cli, repo)
    assert (
        value(
            samples,
            "govsnap_operations_total",
            operation="create",
            environment="production",
            outcome="failure",
        )
        == 1
    )

    git(repo, "config", "govsnap.signingKey", keys.trusted)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    run_ok(cli, repo, "push", "origin")
    assert git(remote, "for-each-ref", "refs/govsnap-local/") == ""
    run_ok(cli, repo, "audit", "verify")


def test_refusals_record_nothing(cli: Cli, repo: Path) -> None:
    """Bad input and a declined confirmation are refused before anything is tried."""
    create_snapshot(cli, repo)
    before = all_refs(repo)
    assert cli(repo, "rollback", "ffff", "--yes").code == 2
    assert cli(repo, "create", "-e", "bad/name").code == 2
    assert cli(repo, "verify").code == 2
    assert all_refs(repo) == before


def forge(repo: Path, message: str) -> None:
    """Append an unsigned commit to the audit chain as anyone with push access could."""
    tip = git(repo, "rev-parse", "refs/govsnap/audit").strip()
    empty = git(repo, "hash-object", "-t", "tree", "/dev/null").strip()
    forged = git(repo, "commit-tree", empty, "-p", tip, "-m", message).strip()
    git(repo, "update-ref", "refs/govsnap/audit", forged, tip)


def test_forged_entries_are_only_shown_and_cannot_break_the_textfile(cli: Cli, repo: Path) -> None:
    create_snapshot(cli, repo, "-e", "production")
    evil = 'prod"} 1\ngovsnap_fake_total 99\n#'
    body = {
        "operation": "rollback",
        "result": "ok",
        "duration_seconds": "slow",
        "outcome": {
            "status": "success",
            "environments": [evil, "\ud800", "production"],
            "sla_seconds": True,
            "sla_breached": "yes",
        },
    }
    forge(repo, "rollback: forged\n\n" + json.dumps(body))
    legacy = {"operation": "rollback", "result": "failed: disk", "arguments": {"environment": "qa"}}
    forge(repo, "rollback: an entry as version 0.1 wrote it\n\n" + json.dumps(legacy))
    forge(repo, 'weird"op\\: not a name\n\n{}')

    samples = metrics(cli, repo)
    names = {name for name, _ in samples}
    assert "govsnap_fake_total" not in names and "govsnap_fake" not in names
    total = "govsnap_operations_total"
    rollbacks = {
        dict(labels)["environment"]: v
        for (name, labels), v in samples.items()
        if name == total and {("operation", "rollback"), ("outcome", "success")} <= labels
    }
    # A name govsnap could not have written is one label value, whatever it says.
    assert rollbacks == {"production": 1, "(invalid)": 1, "qa": 0}
    assert value(samples, total, operation="rollback", environment="qa", outcome="failure") == 1
    assert value(samples, total, operation="(invalid)", environment="", outcome="failure") == 1
    # A malformed duration or SLA is no figure at all.
    last = "govsnap_operation_last_duration_seconds"
    assert value(samples, last, operation="rollback", environment="(invalid)") is None
    breaches = "govsnap_operation_sla_breaches_total"
    assert value(samples, breaches, operation="rollback", environment="production") == 0
    # The forged entries decide nothing: `audit verify` still has no policy to judge
    # them by, and the table shows them.
    shown = run_ok(cli, repo, "audit")
    assert "forged" in shown


def test_stats_of_a_repository_without_an_audit_trail(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo()
    write_files(repo, {"x": "1\n"})
    samples = metrics(cli, repo)
    assert value(samples, "govsnap_audit_readable") == 1
    assert not [name for name, _ in samples if name == "govsnap_operations_total"]


@pytest.mark.parametrize("bad", ["lots", "-1", "0"])
def test_an_unreadable_storage_limit_is_one_line(cli: Cli, repo: Path, bad: str) -> None:
    create_snapshot(cli, repo)
    git(repo, "config", "govsnap.storageLimit", bad)
    result = cli(repo, "stats")
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and "govsnap.storageLimit" in result.err


def test_stats_shows_operations_and_the_limit(cli: Cli, repo: Path) -> None:
    git(repo, "config", "govsnap.sla.create", "1ms")
    git(repo, "config", "govsnap.storageLimit", "1m")
    create_snapshot(cli, repo, "-e", "production")
    shown = run_ok(cli, repo, "stats")
    assert "limit 1.0 MiB" in shown
    # The table is aligned text: columns stand two spaces apart at least.
    [row] = [line for line in shown.splitlines() if line.startswith("create ")]
    cells = re.split(r"\s{2,}", row.strip())
    assert cells[:6] == ["create", "production", "1", "0", "1", "0.001s"]
    figures = json.loads(run_ok(cli, repo, "stats", "--json"))
    assert figures["storage_limit_bytes"] == 1024 * 1024
    assert figures["sla_seconds"]["create"] == 0.001
