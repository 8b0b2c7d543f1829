"""prune: 10,000 snapshots down to the newest 20, with `git gc`, against deleting the same
refs with `git update-ref --stdin` followed by `git gc`.

Creating 10,000 snapshots through the CLI would take hours of signing, so they are
generated through the library: one fixed tree (a small generated project, 1,000 files,
~10 MiB), a snapshot commit per snapshot dated an hour apart, an unsigned tag payload
written by `SnapshotPayload.to_bytes`, refs created in one `git update-ref --stdin`, and
all notes written in one notes commit. The result is then packed by `git gc` once, as a
repository that has lived with its snapshots would be, and kept as a template: every
timed run starts from a fresh copy of it.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.harness import Comparison, Context, timed

SNAPSHOTS = 10_000
KEEP = 20
GIT_EQUIVALENT = f"git update-ref --stdin (delete {SNAPSHOTS - KEEP} refs); git gc"


def generate_snapshots(path: Path, count: int) -> None:
    """Add `count` unsigned snapshots of HEAD's tree to the repository at `path`, one
    hour apart (newest now), with their notes in one commit and one audit entry."""
    import pygit2

    from govsnap import audit, notes
    from govsnap.digest import DigestCache, digest_tree
    from govsnap.objects import (
        SignedTag,
        SnapshotPayload,
        Source,
        write_commit,
        write_tag,
    )
    from govsnap.refs import SNAPSHOT_REF_PREFIX
    from govsnap.repo import Identity, open_repo

    repo = open_repo(path)
    head = repo.git.head.peel(pygit2.Commit)
    tree = str(head.tree_id)
    digest = digest_tree(repo, head.tree_id, DigestCache.for_repo(repo))
    newest = int(datetime.now(UTC).timestamp()) - 60
    summary = f"govsnap snapshot of main@{str(head.id)[:7]} (manual, production)"
    refs: list[str] = []
    noted = {}
    for n in range(count):
        who = Identity("Bench", "bench@example.com", newest - 3600 * n, 0)
        commit = write_commit(repo, tree, [str(head.id)], who, summary + "\n")
        stamp = datetime.fromtimestamp(who.time, UTC).strftime("%Y%m%dT%H%M%SZ")
        payload = SnapshotPayload(
            commit=str(commit),
            tag_name=f"govsnap/production/{stamp}",
            tagger=who,
            summary=summary,
            digest=digest.digest,
            tree=tree,
            trigger="manual",
            environment="production",
            source=Source("refs/heads/main", str(head.id)),
        )
        tag = write_tag(repo, SignedTag(payload.to_bytes()))
        refs.append(f"create {SNAPSHOT_REF_PREFIX}{payload.id} {tag}\n")
        noted[str(tag)] = notes.note_fields(payload, payload.id, digest, None, "none")
    repo.git_cmd("update-ref", "--stdin", input="".join(refs).encode())
    identity = Identity("Bench", "bench@example.com", newest, 0)
    notes.update(
        repo, {tag: (lambda _old, data=data: data) for tag, data in noted.items()}, identity
    )
    audit.append(repo, audit.Entry("create", f"{count} generated snapshots", identity), sign=False)


def template(ctx: Context) -> Path:
    """Return the repository with 10,000 snapshots, generating it on first use."""
    source = ctx.repo("prune-source", files=1000, total_bytes=10 * 1024 * 1024)
    path = ctx.workdir / f"prune-template-{SNAPSHOTS}"
    stamp = path / ".git" / "benchmark-snapshots-ready"
    if not stamp.exists():
        path = ctx.clone(source, path.name)
        generate_snapshots(path, SNAPSHOTS)
        ctx.git(path, "gc", "--quiet")
        stamp.write_text("ok\n")
    ctx.git(path, "config", "govsnap.signingKey", ctx.signing_key)
    return path


def run(ctx: Context) -> list[Comparison]:
    """Time `govsnap prune --keep-last 20` and the stock-git deletes + gc on fresh copies."""
    source = template(ctx)
    work = ctx.workdir / "prune"
    refs = ctx.git(
        source, "for-each-ref", "--sort=-taggerdate", "--format=%(refname) %(objectname)",
        "refs/govsnap/snapshots/",
    ).splitlines()  # fmt: skip
    if len(refs) != SNAPSHOTS:
        raise RuntimeError(f"the template holds {len(refs)} snapshots, not {SNAPSHOTS}")
    deletes = "".join(f"delete {name} {oid}\n" for name, oid in map(str.split, refs[KEEP:]))
    kept = sorted(line.split()[0] for line in refs[:KEEP])

    def fresh_copy() -> None:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(source, work, symlinks=True)

    def govsnap_prune() -> None:
        ctx.run([*ctx.govsnap(), "prune", "--keep-last", str(KEEP), "--yes"], work)

    def stock_git() -> None:
        ctx.run(["git", "update-ref", "--stdin"], work, input=deletes.encode())
        ctx.run(["git", "gc", "--quiet"], work)

    def check() -> None:
        left = ctx.git(work, "for-each-ref", "--format=%(refname)", "refs/govsnap/snapshots/")
        if sorted(left.split()) != kept:
            raise RuntimeError(f"{len(left.split())} snapshot refs left, not the newest {KEEP}")

    # Alternate the two, so that load from elsewhere on the machine (gc is I/O bound)
    # falls on both alike.
    with_govsnap: list[float] = []
    with_git: list[float] = []
    for _ in range(ctx.runs):
        with_govsnap += timed(govsnap_prune, fresh_copy, 1)
        check()
        with_git += timed(stock_git, fresh_copy, 1)
        check()
    shutil.rmtree(work, ignore_errors=True)
    return [
        Comparison(
            f"prune {SNAPSHOTS:,} snapshots to the newest {KEEP}, with git gc",
            with_govsnap,
            with_git,
            GIT_EQUIVALENT,
            ratio_target=1.2,
        )
    ]
