"""examples/monitoring: the alert rules pass `promtool check rules` and, in `promtool test
rules`, fire on series written by real `govsnap stats --prometheus` runs of a repository
with two environments (and stay quiet before the failures); the Grafana dashboard is
well-formed, queries only metrics stats exports, and its PromQL parses."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Cli, Keys, MakeRepo, create_snapshot, git, run_ok
from tests.helpers.tamper import policy_text

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "monitoring"
ALERTS = EXAMPLES / "alerts.yml"
DASHBOARD = EXAMPLES / "grafana-dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is absent (apt-get install prometheus; .ci/run does)"
)

Series = dict[str, float]  # series in PromQL notation -> value


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, check=False)


@contextmanager
def committer_date(epoch: int) -> Iterator[None]:
    os.environ["GIT_COMMITTER_DATE"] = f"@{epoch}"
    try:
        yield
    finally:
        del os.environ["GIT_COMMITTER_DATE"]


def scrape(cli: Cli, repo: Path) -> Series:
    """Run `stats --prometheus` and return its series, as prometheus_client parses them."""
    out = repo.parent / "govsnap.prom"
    run_ok(cli, repo, "stats", "--prometheus", str(out))
    found: Series = {}
    for family in text_string_to_metric_families(out.read_text(encoding="utf-8")):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def staged(before: Series, after: Series) -> list[dict[str, str]]:
    """Return promtool input series: `before` for minutes 0-30, `after` for 31-90."""

    def part(value: float | None, count: int) -> str:
        return f"_x{count}" if value is None else f"{value!r}+0x{count - 1}"

    return [
        {"series": name, "values": f"{part(before.get(name), 31)} {part(after.get(name), 60)}"}
        for name in sorted(set(before) | set(after))
    ]


def rules() -> dict[str, dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return {rule["alert"]: rule for group in loaded["groups"] for rule in group["rules"]}


def expected(alert: str, **labels: str) -> dict[str, Any]:
    """Return the alert promtool should see: the rule's own labels and its annotations
    with the {{ $labels.x }} they name filled in."""
    rule = rules()[alert]

    def fill(text: str) -> str:
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)

    return {
        "exp_labels": {**rule.get("labels", {}), **labels},
        "exp_annotations": {k: fill(v) for k, v in rule.get("annotations", {}).items()},
    }


@needs_promtool
def test_alert_rules_check() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout


@needs_promtool
def test_alerts_fire_on_series_from_real_stats_runs(
    cli: Cli, make_repo: MakeRepo, keys: Keys, tmp_path: Path
) -> None:
    policy = policy_text({"releaser": (keys.trusted, ["*"], ["*"])})
    repo = make_repo({"app.py": "v1\n", ".govsnap/trust.toml": policy})
    now = int(time.time())
    with committer_date(now - 36 * 86400):  # production, rehearsed 36 days ago
        production = create_snapshot(cli, repo, "-e", "production")
        run_ok(cli, repo, "rehearse", production)
    with committer_date(now - 30 * 3600):  # both verified 30 hours ago
        staging = create_snapshot(cli, repo, "-e", "staging")
        run_ok(cli, repo, "verify", "--all")
    run_ok(cli, repo, "verify", staging)  # and staging again now
    before = scrape(cli, repo)

    # Then a create and a rollback fail (the signing program is gone), a create is slow
    # (its SLA lowered) and snapshots hold more than the storage limit.
    git(repo, "config", "gpg.program", "/nonexistent/gpg")
    assert cli(repo, "create", "-e", "production").code == 3
    assert cli(repo, "rollback", production, "--yes").code == 3
    git(repo, "config", "--unset", "gpg.program")
    git(repo, "config", "govsnap.sla.create", "1ms")
    create_snapshot(cli, repo, "-e", "staging")
    git(repo, "config", "govsnap.storageLimit", "1")
    after = scrape(cli, repo)

    quiet = ("GovsnapCreateFailed", "GovsnapRollbackFailed", "GovsnapSLABreached")
    stale_verification = expected(
        "GovsnapVerificationStale", environment="production", operation="verify", outcome="success"
    )
    stale_rehearsal = expected(
        "GovsnapRehearsalStale", environment="production", operation="rehearse", outcome="success"
    )
    cases: list[dict[str, Any]] = [
        *({"eval_time": "20m", "alertname": name, "exp_alerts": []} for name in quiet),
        {"eval_time": "20m", "alertname": "GovsnapStorageHigh", "exp_alerts": []},
        {
            "eval_time": "20m",
            "alertname": "GovsnapVerificationStale",
            "exp_alerts": [stale_verification],
        },
        {"eval_time": "20m", "alertname": "GovsnapRehearsalStale", "exp_alerts": [stale_rehearsal]},
        {
            "eval_time": "60m",
            "alertname": "GovsnapCreateFailed",
            "exp_alerts": [
                expected(
                    "GovsnapCreateFailed",
                    environment="production",
                    operation="create",
                    outcome="failure",
                )
            ],
        },
        {
            "eval_time": "60m",
            "alertname": "GovsnapRollbackFailed",
            "exp_alerts": [
                expected(
                    "GovsnapRollbackFailed",
                    environment="production",
                    operation="rollback",
                    outcome="failure",
                )
            ],
        },
        {
            "eval_time": "60m",
            "alertname": "GovsnapSLABreached",
            "exp_alerts": [
                expected("GovsnapSLABreached", environment="staging", operation="create")
            ],
        },
        {
            "eval_time": "60m",
            "alertname": "GovsnapStorageHigh",
            "exp_alerts": [expected("GovsnapStorageHigh")],
        },
        {
            "eval_time": "60m",
            "alertname": "GovsnapVerificationStale",
            "exp_alerts": [stale_verification],
        },
        {"eval_time": "60m", "alertname": "GovsnapAuditUnreadable", "exp_alerts": []},
    ]
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(ALERTS)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": staged(before, after),
                        "alert_rule_test": cases,
                    }
                ],
            }
        )
    )
    tested = promtool("test", "rules", str(test_file))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@needs_promtool
def test_stats_stale_alert(tmp_path: Path) -> None:
    """Figures that stop coming: written by no stats run, since the point is that none ran."""
    cases = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "10m",
                "input_series": [
                    {"series": "govsnap_stats_timestamp_seconds", "values": "0+0x20"},
                ],
                "alert_rule_test": [
                    {"eval_time": "110m", "alertname": "GovsnapStatsStale", "exp_alerts": []},
                    {
                        "eval_time": "130m",
                        "alertname": "GovsnapStatsStale",
                        "exp_alerts": [expected("GovsnapStatsStale")],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "stale.yml"
    path.write_text(yaml.safe_dump(cases))
    tested = promtool("test", "rules", str(path))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def test_dashboard_is_importable_and_queries_what_stats_exports(
    cli: Cli, make_repo: MakeRepo, tmp_path: Path
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    # What Grafana's importer needs: a title, a uid, a schema version, panels with unique
    # ids and a place on the grid, a datasource input the importer asks for.
    assert dashboard["title"] and re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    [source] = dashboard["__inputs"]
    assert source["type"] == "datasource" and source["pluginId"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 6
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["type"] in {"stat", "timeseries", "table", "bargauge", "row"}
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "environment"} <= variables

    # Every metric a query names is one `stats --prometheus` writes.
    repo = make_repo()
    create_snapshot(cli, repo, "-e", "production")
    git(repo, "config", "govsnap.storageLimit", "1g")
    out = tmp_path / "m.prom"
    run_ok(cli, repo, "stats", "--prometheus", str(out))
    exported = {
        sample.name
        for family in text_string_to_metric_families(out.read_text())
        for sample in family.samples
    }
    queries = dashboard_queries(dashboard)
    named = {name for expr in queries for name in re.findall(r"\bgovsnap_[a-z_]+", expr)}
    assert named and named <= exported, named - exported

    if PROMTOOL is None:
        pytest.skip("promtool is absent: the queries' PromQL is not parsed")
    # Grafana's variables filled in, each query must parse as PromQL: as a recording rule.
    filled = [
        expr.replace("$__rate_interval", "5m")
        .replace("$__range", "1d")
        .replace("$environment", "production")
        for expr in queries
    ]
    recording = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(filled)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(recording))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
