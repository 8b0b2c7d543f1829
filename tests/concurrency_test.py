"""Concurrent writers lose nothing: 8 processes creating 25 snapshots each while another
deletes snapshots (and packs refs, as `git gc` does) -- every ref update is CAS."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from govsnap.refs import AUDIT_REF
from tests.helpers import MakeRepo, git, snapshot_ids

WORKERS = 8
PER_WORKER = 25
OLD = 16

CREATOR = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from govsnap.repo import open_repo
    from govsnap.store import CreateOptions, create

    repo = open_repo(Path(sys.argv[1]))
    worker, count = sys.argv[2], int(sys.argv[3])
    for i in range(count):
        # A label per snapshot: two creates in one second would otherwise be one snapshot.
        options = CreateOptions(from_rev="HEAD", labels=[f"w{worker}-{i}"], unsigned=True)
        result = create(repo, options)
        print(json.dumps([result.snapshot.id, result.snapshot.tag_oid]), flush=True)
    """
)

# The concurrent deleter: what prune does to each snapshot (CAS ref delete, note removal,
# audit entry), with `git pack-refs` runs in between, which rewrite packed-refs and
# delete loose refs under the creators' feet.
DELETER = textwrap.dedent(
    """
    import json, subprocess, sys
    from pathlib import Path
    import pygit2
    from govsnap import audit, notes
    from govsnap.objects import delete_ref
    from govsnap.refs import SNAPSHOT_REF_PREFIX
    from govsnap.repo import open_repo

    repo = open_repo(Path(sys.argv[1]))
    victims = json.loads(sys.argv[2])
    for n, (ident, tag) in enumerate(victims):
        assert delete_ref(repo, SNAPSHOT_REF_PREFIX + ident, pygit2.Oid(hex=tag))
        identity = repo.committer()
        notes.remove(repo, [tag], identity)
        audit.append(repo, audit.Entry("prune", f"deleted {ident}", identity, snapshots=[ident]))
        if n % 4 == 0:
            subprocess.run(["git", "pack-refs", "--all", "--prune"], cwd=sys.argv[1], check=True)
    """
)


def _run(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_eight_creators_and_a_pruner_lose_nothing(make_repo: MakeRepo) -> None:
    repo = make_repo({"a.txt": "a\n", "b/c.txt": "c\n"}, signed=False)
    old_proc = _run(CREATOR, str(repo), "old", str(OLD))
    out, err = old_proc.communicate(timeout=120)
    assert old_proc.returncode == 0, err
    old = [json.loads(line) for line in out.splitlines()]
    assert len({ident for ident, _ in old}) == OLD

    creators = [_run(CREATOR, str(repo), str(k), str(PER_WORKER)) for k in range(WORKERS)]
    deleter = _run(DELETER, str(repo), json.dumps(old))
    created: list[tuple[str, str]] = []
    for proc in [*creators, deleter]:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        created += [tuple(json.loads(line)) for line in out.splitlines()]
    new_ids = {ident for ident, _ in created}
    assert len(new_ids) == WORKERS * PER_WORKER

    # Every new snapshot is there, every deleted one is gone -- as stock git sees it.
    assert set(snapshot_ids(repo)) == new_ids
    # Every new snapshot has its note; the deleted ones' notes are gone.
    listed = git(repo, "notes", "--ref=govsnap", "list").split()
    annotated = set(listed[1::2])
    assert annotated == {tag for _, tag in created}
    for ident, tag in created[:: PER_WORKER // 5]:
        note = json.loads(git(repo, "notes", "--ref=govsnap", "show", tag))
        assert note["id"] == ident
    # Every operation has its audit entry, on one linear chain.
    assert git(repo, "rev-list", "--count", "--merges", AUDIT_REF).strip() == "0"
    messages = git(repo, "log", "--format=%s", AUDIT_REF).splitlines()
    assert len(messages) == OLD + WORKERS * PER_WORKER + OLD
    audited = {line.split()[2] for line in messages if line.startswith("create: snapshot ")}
    assert audited == new_ids | {ident for ident, _ in old}
    assert sum(line.startswith("prune: deleted ") for line in messages) == OLD

    fsck = subprocess.run(
        ["git", "fsck", "--full", "--strict", "--no-dangling"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert fsck.returncode == 0 and fsck.stdout == "", fsck.stdout + fsck.stderr
