"""`govsnap init`: check the tools, write `govsnap.*` defaults, a signing key if asked (never a
second one), and a trust policy naming that key, ready to commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from govsnap.errors import GovsnapError, SigningError
from govsnap.objects import validate_name
from govsnap.repo import Repo
from govsnap.schemas import schema_name
from govsnap.signing import SSHSigner, generate_openpgp_key, signer_for
from govsnap.trust import POLICY_PATH, WILDCARD, policy_blob, policy_ref

DEFAULTS: dict[str, str] = {
    "govsnap.environment": "default",
    "govsnap.keepLast": "20",
    "govsnap.promotionBranches": "main master release/*",
    "govsnap.hookFailure": "block",
    "govsnap.rto": "300",
}
NEXT_STEP = "git add .govsnap && git commit -m 'govsnap: trust policy'"


@dataclass(frozen=True)
class InitOptions:
    """What `init` was asked to do."""

    generate_key: bool = False
    keyring: Path | None = None
    environment: str | None = None
    signer_name: str | None = None
    signer_environments: Sequence[str] = (WILDCARD,)
    signer_operations: Sequence[str] = (WILDCARD,)
    dry_run: bool = False


@dataclass
class InitReport:
    """What `init` found and changed (or, with dry_run, would change)."""

    git_version: str
    dry_run: bool = False
    config_set: dict[str, str] = field(default_factory=dict)
    config_kept: dict[str, str] = field(default_factory=dict)
    generated_key: str | None = None
    kept_key: str | None = None  # --generate-key found a key configured already
    keyring: str | None = None
    signing: str = "not configured"
    signing_ok: bool = False
    signing_configured: bool = False
    policy: str = "none"  # "written", "exists", "would write", "none"
    policy_detail: str = ""
    next_steps: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Raise SigningError when a signing key is configured and does not sign."""
        if self.signing_configured and not self.signing_ok:
            raise SigningError(f"signing does not work: {self.signing}")

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "schema": schema_name("init"),
            "git_version": self.git_version,
            "dry_run": self.dry_run,
            "config_set": self.config_set,
            "config_kept": self.config_kept,
            "generated_key": self.generated_key,
            "kept_key": self.kept_key,
            "keyring": self.keyring,
            "signing": self.signing,
            "signing_ok": self.signing_ok,
            "signing_configured": self.signing_configured,
            "policy": self.policy,
            "policy_detail": self.policy_detail,
            "next_steps": self.next_steps,
        }


def _set(repo: Repo, report: InitReport, key: str, value: str) -> None:
    if not report.dry_run:
        repo.set_config(key, value)
    report.config_set[key] = value


def _configured_key(repo: Repo) -> str | None:
    return repo.config_str("govsnap.signingKey") or repo.config_str("user.signingKey")


def init(repo: Repo, options: InitOptions) -> InitReport:
    """Write missing defaults, make a key if asked and none is configured, check that
    signing works, and write a trust policy naming the key (with its approval) when the
    repository has none; with `dry_run`, only say what would be done."""
    from govsnap import trust_edit

    version = repo.git_cmd("--version").stdout.decode().strip()
    report = InitReport(git_version=version, dry_run=options.dry_run)
    wanted = dict(DEFAULTS)
    if options.environment is not None:
        wanted["govsnap.environment"] = validate_name("environment", options.environment)
    for key, value in wanted.items():
        current = repo.config_str(key)
        if current is None or (key == "govsnap.environment" and options.environment is not None):
            _set(repo, report, key, value)
        else:
            report.config_kept[key] = current
    existing = _configured_key(repo)
    if options.generate_key and existing:
        # Never a second key behind the user's back: the first one may already sign.
        report.kept_key = existing
    elif options.generate_key and options.dry_run:
        report.generated_key = "(a new Ed25519 key)"
        report.keyring = str(options.keyring) if options.keyring else None
    elif options.generate_key:
        who = repo.committer()
        home = str(options.keyring.expanduser().resolve()) if options.keyring else None
        if home:
            Path(home).mkdir(mode=0o700, parents=True, exist_ok=True)
        fingerprint = generate_openpgp_key(who.name, who.email, home)
        _set(repo, report, "govsnap.signingKey", fingerprint)
        if home:
            _set(repo, report, "govsnap.gpgHome", home)
        report.generated_key = fingerprint
        report.keyring = home
    signer = None if options.dry_run and report.generated_key else signer_for(repo)
    identity = None
    if signer is not None:
        report.signing_configured = True
        try:
            signature = signer.sign(b"govsnap init signing check\n")
        except GovsnapError as exc:
            report.signing = f"{signer.kind} signing FAILS: {exc.message}"
        else:
            report.signing = f"{signature.kind} key {signature.signer}"
            report.signing_ok = True
            identity = signature.signer
    ref = policy_ref(repo)
    if repo.config_str("govsnap.trustRef") is None and ref.startswith("refs/"):
        _set(repo, report, "govsnap.trustRef", ref)
    if repo.is_bare:
        report.policy_detail = "a bare repository: commit the policy from a clone"
        return report
    committed = policy_blob(repo, ref)[1] is not None
    on_disk = (repo.workdir / POLICY_PATH).exists()
    if committed or on_disk:
        report.policy = "exists"
        where = "committed" if committed else "in the working tree, not committed yet"
        report.policy_detail = (
            f"{POLICY_PATH} exists ({where}); add a key with `govsnap trust add-signer NAME "
            "--key KEY`"
        )
        if not committed:
            report.next_steps.append(NEXT_STEP)
        return report
    if options.dry_run and report.generated_key:
        report.policy = "would write"
        report.policy_detail = f"{POLICY_PATH}: one signer, the new key, approved by it"
        report.next_steps.append(NEXT_STEP)
        return report
    if signer is None or identity is None:
        report.policy_detail = (
            "no working signing key: configure one (or pass --generate-key), then run "
            "`govsnap trust init`"
        )
        return report
    key = signer.public_key() if isinstance(signer, SSHSigner) else identity
    name = options.signer_name or _default_name(repo)
    edit = trust_edit.init_policy(
        repo,
        name,
        key,
        environments=options.signer_environments,
        operations=options.signer_operations,
        dry_run=options.dry_run,
    )
    report.policy = "would write" if options.dry_run else "written"
    entry = edit.policy.signers[0]
    report.policy_detail = (
        f"{POLICY_PATH}: signer {name} ({signer.kind} {identity}) may "
        f"{', '.join(entry.operations)} in {', '.join(entry.environments)}, approved by its key"
    )
    if repo.config_str("govsnap.trustAnchor") is None:
        # This clone made the policy: its first version is anchored by this key.
        _set(repo, report, "govsnap.trustAnchor", identity)
    report.next_steps.append(NEXT_STEP)
    report.next_steps.append(
        f"in every other clone and in CI: git config govsnap.trustAnchor {identity}"
    )
    return report


def _default_name(repo: Repo) -> str:
    """Return a signer name from the user's e-mail (or name), fit for the policy."""
    email = repo.config_str("user.email") or ""
    base = email.split("@", 1)[0] or (repo.config_str("user.name") or "owner")
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in base).strip("-._")
    return (cleaned[:64] or "owner") if cleaned[:1].isalnum() else "owner"
