#!/usr/bin/env bash
# Server-side govsnap, end to end in temporary directories: a bare repository whose
# pre-receive hook refuses snapshots that fail verification, a trust policy committed
# on its default branch, and a client whose good snapshot is accepted while an
# unsigned one is refused. Needs git, gpg and govsnap on PATH; leaves nothing behind.
set -euo pipefail

work=$(mktemp -d)
trap 'gpgconf --homedir "$work/gnupg" --kill all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
export GIT_AUTHOR_NAME="Release Bot" GIT_AUTHOR_EMAIL="release-bot@example.com"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# 1. The server: a bare repository with govsnap's pre-receive hook, enforcing the trust
#    policy of main (named in full: a server never takes HEAD's branch for it).
server="$work/server.git"
git init -q --bare -b main "$server"
step govsnap -C "$server" hooks install --server --trust-ref refs/heads/main

# 2. A client with a signing key, which commits the trust policy naming that key (with
#    its public key, so that the server checks signatures against the policy alone).
client="$work/client"
git init -q -b main "$client"
cd "$client"
govsnap init --generate-key --environment production --signer release-bot >/dev/null
fpr=$(git config govsnap.signingKey)
echo 'print("v1")' > app.py
git add -A && git commit -q -m "v1 with trust policy"
git remote add origin "$server"

# 3. The server's root of trust: the key that signed the policy's first version. Without
#    it, the first pusher of the policy branch would define the policy; the hook refuses.
step git -C "$server" config govsnap.trustAnchor "$fpr"
step git push -q origin main

# 4. A signed snapshot by a trusted key is accepted...
step govsnap create --label release-1
step govsnap push origin

# 5. ...and an unsigned one is refused by the server.
echo 'print("v2")' > app.py
govsnap create --unsigned --label sneaky >/dev/null
if govsnap push origin; then
    echo "unexpected: the server accepted an unsigned snapshot" >&2
    exit 1
fi
printf '\nserver-setup finished: the server holds only verified snapshots:\n'
git -C "$server" for-each-ref refs/govsnap/snapshots/
