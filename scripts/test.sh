#!/usr/bin/env bash
# The whole suite: generated code fresh, lexicons compatible with the published ones, types sound, then unit and integration tests.
# Run through scripts/with-node.sh (npm test does), which provides Node 22 and node_modules.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p .cache

echo "== moodsync codegen --check"
node bin/moodsync.js codegen --check

echo "== moodsync lexicon check (lexicons/ against the pinned published schema)"
node bin/moodsync.js lexicon check

echo "== typecheck (tsc)"
tsc -p tsconfig.json

echo "== test rig: MongoDB-wire server and the real network programs (built once, cached in .cache/)"
node rig/prepare.ts

echo "== vitest"
status=0
vitest run --reporter=default --reporter=json --outputFile.json=.cache/vitest.json "$@" || status=$?
# One plain closing line that any CI log reader understands.
node -e "
  const r = JSON.parse(require('node:fs').readFileSync('.cache/vitest.json', 'utf8'))
  console.log('tests: ' + r.numPassedTests + ' passed, ' + r.numFailedTests + ' failed' + (r.numPendingTests + r.numTodoTests ? ', ' + (r.numPendingTests + r.numTodoTests) + ' skipped' : ''))
" || true
exit "$status"
