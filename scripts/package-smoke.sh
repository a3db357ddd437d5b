#!/usr/bin/env bash
# The package as the platform installs it: packed (prepack compiles dist/), installed without
# dev dependencies into a scratch folder, and every command its CLI lists answers --help, so
# nothing listed needs what only a checkout has. Run through scripts/with-node.sh (CI does).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd "$root"
tarball="$(npm pack --silent --pack-destination "$scratch" | tail -1)"
cd "$scratch"
npm init -y >/dev/null
npm install --omit=dev --no-audit --no-fund --silent "./$tarball"
bin=./node_modules/.bin/moodsync
"$bin" --version
commands="$("$bin" --help | awk '/^  [a-z-]+  /{print $1}')"
[ -n "$commands" ] || { echo "package-smoke: moodsync --help lists no command" >&2; exit 1; }
for command in $commands; do
  "$bin" "$command" --help >/dev/null || { echo "package-smoke: installed 'moodsync $command --help' failed" >&2; exit 1; }
done
echo "package-smoke: the installed package lists $(echo "$commands" | wc -w) commands, all answer --help: $(echo $commands)"
