#!/usr/bin/env bash
# A real end-to-end demo of govsnap in a throwaway repository with a throwaway key.
# Needs git, gpg and govsnap on PATH; leaves nothing behind.
set -euo pipefail

work=$(mktemp -d)
trap 'gpgconf --homedir "$work/gnupg" --kill all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

repo="$work/app"
git init -q -b main "$repo"
cd "$repo"
git config user.name "Release Engineer"
git config user.email "release@example.com"
printf 'print("v1")\n' > app.py
mkdir -p config && printf 'replicas: 3\n' > config/prod.yaml
git add -A && git commit -q -m "v1"

# init makes a key and writes the trust policy naming it (with its public key): this key
# may sign for production. The policy is committed like any other change.
step govsnap init --generate-key --environment production --signer release-engineer \
    --signer-environment production
step cat .govsnap/trust.toml
git add .govsnap && git commit -q -m "govsnap: trust policy"

step govsnap create --label release-1 --message "first release"
printf 'print("v2")\n' > app.py
printf 'new\n' > notes.txt
step govsnap create --label release-2
step govsnap list
step govsnap show latest
step govsnap diff latest~1 latest
latest=$(govsnap list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshots"][0]["id"])')
step git verify-tag "refs/govsnap/snapshots/$latest"
step git notes --ref=govsnap list
step govsnap verify --all

# Roll back to release-1, then undo the rollback through its safety snapshot.
step govsnap rollback latest~1 --yes
step cat app.py
safety=$(govsnap list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshots"][0]["id"])')
step govsnap rollback "$safety" --yes
step cat app.py notes.txt
step git log --oneline refs/govsnap/audit
printf '\nquickstart finished: every snapshot above is a signed git tag under refs/govsnap/snapshots/\n'
