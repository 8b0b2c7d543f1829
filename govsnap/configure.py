"""`govsnap init`: check the tools, write `govsnap.*` defaults, optionally make a key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from govsnap.errors import GovsnapError
from govsnap.objects import validate_name
from govsnap.repo import Repo
from govsnap.signing import generate_openpgp_key, signer_for

DEFAULTS: dict[str, str] = {
    "govsnap.environment": "default",
    "govsnap.keepLast": "20",
    "govsnap.promotionBranches": "main master release/*",
    "govsnap.hookFailure": "block",
    "govsnap.rto": "300",
}


@dataclass
class InitReport:
    """What `init` found and changed."""

    git_version: str
    config_set: dict[str, str] = field(default_factory=dict)
    config_kept: dict[str, str] = field(default_factory=dict)
    generated_key: str | None = None
    keyring: str | None = None
    signing: str = "not configured"
    signing_ok: bool = False
    signing_configured: bool = False

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "git_version": self.git_version,
            "config_set": self.config_set,
            "config_kept": self.config_kept,
            "generated_key": self.generated_key,
            "keyring": self.keyring,
            "signing": self.signing,
            "signing_ok": self.signing_ok,
            "signing_configured": self.signing_configured,
        }


def init(
    repo: Repo, generate_key: bool, keyring: Path | None, environment: str | None
) -> InitReport:
    """Write missing defaults, make a key if asked, and check that signing works."""
    version = repo.git_cmd("--version").stdout.decode().strip()
    report = InitReport(git_version=version)
    wanted = dict(DEFAULTS)
    if environment is not None:
        wanted["govsnap.environment"] = validate_name("environment", environment)
    for key, value in wanted.items():
        current = repo.config_str(key)
        if current is None or (key == "govsnap.environment" and environment is not None):
            repo.set_config(key, value)
            report.config_set[key] = value
        else:
            report.config_kept[key] = current
    if generate_key:
        identity = repo.committer()
        home = str(keyring.expanduser().resolve()) if keyring else None
        if home:
            Path(home).mkdir(mode=0o700, parents=True, exist_ok=True)
        fingerprint = generate_openpgp_key(identity.name, identity.email, home)
        repo.set_config("govsnap.signingKey", fingerprint)
        report.config_set["govsnap.signingKey"] = fingerprint
        if home:
            repo.set_config("govsnap.gpgHome", home)
            report.config_set["govsnap.gpgHome"] = home
        report.generated_key = fingerprint
        report.keyring = home
    signer = signer_for(repo)
    if signer is not None:
        report.signing_configured = True
        try:
            signature = signer.sign(b"govsnap init signing check\n")
        except GovsnapError as exc:
            report.signing = f"{signer.kind} signing FAILS: {exc.message}"
        else:
            report.signing = f"{signature.kind} key {signature.signer}"
            report.signing_ok = True
    return report
