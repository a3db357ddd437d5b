#!/usr/bin/env bash
# Runs a command with Node >= 22 first on PATH and the project's dependencies installed.
# The machines this project runs on may ship an older Node; the current @atproto/* packages
# crash on it, so we bring Node 22 from the npm registry into .toolchain/ (once, cached).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
node_version=22.23.5

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if ! command -v node >/dev/null 2>&1 || [ "$(node_major node)" -lt 22 ]; then
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) echo "moodsync: no Node 22 package for $(uname -m); install Node >= 22 yourself" >&2; exit 1 ;;
  esac
  pkg="$root/.toolchain/node_modules/node-linux-$arch"
  if [ ! -x "$pkg/bin/node" ] || [ "$("$pkg/bin/node" -p process.version)" != "v$node_version" ]; then
    echo "moodsync: installing Node $node_version (npm package node-linux-$arch) into .toolchain/" >&2
    npm install --prefix "$root/.toolchain" --no-save --no-package-lock --no-audit --no-fund \
      "node-linux-$arch@$node_version" >&2
  fi
  export PATH="$pkg/bin:$PATH"
  # Native addons (better-sqlite3) must build against these headers, not the system Node's.
  export npm_config_nodedir="$pkg"
fi

# Native addons (better-sqlite3) must build against the Node that will load them, whichever
# Node 22 this is (ours, or one already first on PATH), never headers found elsewhere.
if [ -z "${npm_config_nodedir:-}" ]; then
  prefix="$(cd "$(dirname "$(command -v node)")/.." && pwd)"
  if [ -f "$prefix/include/node/node.h" ]; then export npm_config_nodedir="$prefix"; fi
fi

# Install dependencies when the lockfile changed since the last install.
stamp="$root/node_modules/.moodsync-lock"
want="$(node -p "require('node:crypto').createHash('sha256').update(require('node:fs').readFileSync('$root/package-lock.json')).digest('hex')+' '+process.version")"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # MOODSYNC_WHILE_INSTALLING: a command that needs only Node (the rig's builds) runs beside npm
  # ci, so a first run compiles while it downloads. It goes on after; what it builds is cached,
  # and whoever needs it waits for it there (rig/build-cache.ts), or builds it, if it failed.
  if [ -n "${MOODSYNC_WHILE_INSTALLING:-}" ]; then
    (cd "$root" && eval "$MOODSYNC_WHILE_INSTALLING" >&2) &
  fi
  echo "moodsync: installing dependencies (npm ci; a first run downloads about 400 packages)" >&2
  # npm ci says nothing for minutes on a cold cache: a line every 20 s says it is still at it.
  (started=$SECONDS; while sleep 20; do echo "  still installing dependencies: $((SECONDS - started)) s" >&2; done) &
  ticker=$!
  status=0
  (cd "$root" && npm ci --no-audit --no-fund >&2) || status=$?
  kill "$ticker" 2>/dev/null || true
  [ "$status" -eq 0 ] || exit "$status"
  echo "$want" >"$stamp"
fi

export PATH="$root/node_modules/.bin:$PATH"
exec "$@"
