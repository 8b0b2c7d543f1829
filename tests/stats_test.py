"""govsnap stats: figures per environment, outcomes from the notes, the last rollback from
the audit trail, bytes only snapshots hold, and the Prometheus textfile."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from govsnap import notes, stats
from govsnap.repo import open_repo
from tests.helpers import Cli, Keys, MakeRepo, create_snapshot, git, run_ok, write_files
from tests.helpers.tamper import policy_text

T0 = 1_780_000_000  # 2026-05-28T20:26:40Z


@pytest.fixture
def repo(make_repo: MakeRepo, keys: Keys) -> Path:
    """A repository with a committed trust policy letting the test key do everything."""
    policy = policy_text({"releaser": (keys.trusted, ["*"], ["*"])})
    return make_repo({"README.md": "hello\n", "app.py": "v1\n", ".govsnap/trust.toml": policy})


def create_at(cli: Cli, repo: Path, when: int, *args: str) -> str:
    """Take a snapshot dated `when` (GIT_COMMITTER_DATE) and return its id."""
    os.environ["GIT_COMMITTER_DATE"] = f"@{when}"
    try:
        return create_snapshot(cli, repo, *args)
    finally:
        del os.environ["GIT_COMMITTER_DATE"]


def test_figures_per_environment_from_notes_and_audit(repo: Path, cli: Cli) -> None:
    p1 = create_at(cli, repo, T0, "-e", "production")
    p2 = create_at(cli, repo, T0 + 600, "-e", "production")
    s1 = create_at(cli, repo, T0 + 60, "-e", "staging")
    run_ok(cli, repo, "verify", "--all")  # records a passing verification in every note
    r = open_repo(repo)
    tag = git(repo, "rev-parse", f"refs/govsnap/snapshots/{p1}").strip()
    failed = {"time": "2026-06-01T00:00:00Z", "verdict": "fail", "signer": None}
    notes.merge_fields(r, tag, {"verification": failed}, r.committer())
    run_ok(cli, repo, "rehearse", s1)
    run_ok(cli, repo, "rollback", p2, "--yes")

    figures = json.loads(run_ok(cli, repo, "stats", "--json"))
    production = figures["environments"]["production"]
    # rollback took a safety snapshot of the state it replaced, in the environment it
    # rolled back (so the policy judges its undo as it judged the rollback), never verified
    assert production["snapshots"] == 3
    assert figures["environments"]["staging"]["snapshots"] == 1
    assert figures["snapshots"] == 4
    assert production["verification"]["pass"] == 1  # p2
    assert production["verification"]["fail"] == 1  # p1
    assert production["verification"]["never"] == 1  # the safety snapshot
    assert production["verification"]["last_fail"] == 1_780_272_000  # 2026-06-01
    assert figures["environments"]["staging"]["rehearsal"]["pass"] == 1
    assert production["rehearsal"] == {
        "pass": 0,
        "fail": 0,
        "never": 3,
        "last_pass": None,
        "last_fail": None,
    }
    staging = figures["environments"]["staging"]
    assert staging["newest"] == T0 + 60
    assert abs(staging["newest_age_seconds"] - (time.time() - (T0 + 60))) < 30
    # The last rollback's duration is the one its audit entry records (stock git reads it).
    body = git(repo, "log", "-1", "--format=%b", "--grep=^rollback:", "refs/govsnap/audit")
    recorded = json.loads(body)["duration_seconds"]
    assert figures["last_rollback"]["duration_seconds"] == recorded > 0
    assert figures["last_rollback"]["result"] == "ok"
    assert figures["last_rollback"]["snapshot"] == p2

    text = run_ok(cli, repo, "stats")
    assert "production" in text and "last rollback:" in text and "held only by snapshots" in text


def test_prometheus_textfile_parses_and_is_replaced_atomically(
    repo: Path, cli: Cli, tmp_path: Path
) -> None:
    create_at(cli, repo, T0, "-e", "production")
    create_at(cli, repo, T0 + 60, "-e", "staging", "-l", "x")
    run_ok(cli, repo, "verify", "--all")
    out_dir = tmp_path / "textfile"
    out_dir.mkdir()
    target = out_dir / "govsnap.prom"
    target.write_text("stale\n")
    figures = json.loads(run_ok(cli, repo, "stats", "--json", "--prometheus", str(target)))

    text = target.read_text()
    assert os.listdir(out_dir) == ["govsnap.prom"]  # the temporary file was renamed
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families and all(name.startswith("govsnap_") for name in families)
    for name, family in families.items():
        # A counter's family is named without the _total of its samples (OpenMetrics).
        exposed = f"{name}_total" if family.type == "counter" else name
        assert f"# HELP {exposed} " in text and f"# TYPE {exposed} {family.type}" in text
        assert family.type in ("gauge", "counter")

    def value(name: str, **labels: str) -> float:
        [sample] = [s for s in families[name].samples if s.labels == labels]
        return sample.value

    assert value("govsnap_snapshots", environment="production") == 1
    assert value("govsnap_snapshots", environment="staging") == 1
    assert value("govsnap_newest_snapshot_timestamp_seconds", environment="staging") == T0 + 60
    assert value("govsnap_verification_snapshots", environment="production", result="pass") == 1
    assert value("govsnap_rehearsal_snapshots", environment="staging", result="never") == 1
    assert value("govsnap_snapshot_only_bytes") == figures["snapshot_only_bytes"] > 0
    age = value("govsnap_newest_snapshot_age_seconds", environment="production")
    assert age == figures["environments"]["production"]["newest_age_seconds"]
    assert "govsnap_last_rollback_duration_seconds" not in families  # no rollback yet


def test_empty_repository(make_repo: MakeRepo, cli: Cli, tmp_path: Path) -> None:
    path = make_repo()
    figures = json.loads(run_ok(cli, path, "stats", "--json", "--prometheus", str(tmp_path / "m")))
    assert figures["environments"] == {} and figures["snapshot_only_bytes"] == 0
    assert figures["last_rollback"] is None
    names = {f.name for f in text_string_to_metric_families((tmp_path / "m").read_text())}
    assert names == {
        "govsnap_snapshot_only_bytes",
        "govsnap_unreadable_snapshots",
        "govsnap_stats_timestamp_seconds",
        "govsnap_audit_readable",
        "govsnap_operation_sla_seconds",
    }


def test_bytes_held_only_by_snapshots(repo: Path, cli: Cli) -> None:
    r = open_repo(repo)
    assert stats.snapshot_only_bytes(r) == 0
    create_at(cli, repo, T0)
    # Only the snapshot commit and tag are new: the tree is HEAD's.
    small = stats.snapshot_only_bytes(r)
    assert 0 < small < 4096
    write_files(repo, {"big.bin": os.urandom(200_000)})  # incompressible, untracked
    create_at(cli, repo, T0 + 1)
    assert stats.snapshot_only_bytes(r) > 200_000
    # Once a branch holds the file too, it is no longer the snapshots' alone.
    git(repo, "checkout", "-q", "-b", "keep")
    git(repo, "add", "big.bin")
    git(repo, "commit", "-q", "-m", "keep the blob")
    assert stats.snapshot_only_bytes(r) < 2 * 4096
    # Snapshots fetched from a remote (refs/govsnap-remote/) count as snapshots too.
    git(repo, "update-ref", "refs/govsnap-remote/origin/snapshots/x", "HEAD")
    assert stats.snapshot_only_bytes(r) < 2 * 4096


def test_bare_repository(repo: Path, cli: Cli, tmp_path: Path) -> None:
    """A server's bare repository can be monitored."""
    create_at(cli, repo, T0, "-e", "production")
    bare = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    git(repo, "push", "-q", str(bare), "refs/govsnap/*:refs/govsnap/*", "refs/notes/govsnap")
    figures = json.loads(run_ok(cli, bare, "stats", "--json"))
    assert figures["environments"]["production"]["snapshots"] == 1


def test_bad_prometheus_paths(repo: Path, cli: Cli, tmp_path: Path) -> None:
    for target, why in (
        (tmp_path / "missing" / "m.prom", "is not a directory"),
        (tmp_path, "it is a directory"),
    ):
        result = cli(repo, "stats", "--prometheus", str(target))
        assert result.code == 2
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and why in lines[0] and result.out == ""
