import { parseArgs } from 'node:util'
import type { StatusCounts } from '../../reconcile/compare.ts'
import { status as runStatus, type StatusReport } from '../../reconcile/status.ts'
import type { Command } from '../command.ts'
import { complete, coverageLines } from '../coverage.ts'
import { exitForCoverage } from '../exit-codes.ts'
import { report } from '../output.ts'
import { table } from '../table.ts'
import { commonOptions, concurrencyOf, subjectsFor, withReconcile } from './reconcile-context.ts'

const COLUMNS: [keyof StatusCounts, string][] = [
  ['inSync', 'in sync'],
  ['atprotoOnly', 'atproto only'],
  ['mongoOnly', 'record gone'],
  ['unmigrated', 'never written'],
  ['differs', 'differs'],
  ['duplicates', 'duplicates'],
  ['unconfirmed', 'unconfirmed'],
  ['noAccount', 'no account'],
  ['invalid', 'invalid'],
  ['noRef', 'no ref'],
  ['legacyText', 'legacy text'],
  ['oversize', 'oversize'],
  ['legacyMongoId', 'legacy mongoId'],
  ['tooLong', 'too long'],
  ['refused', 'refused'],
]

export const status: Command = {
  name: 'status',
  summary: 'compare MongoDB with the repos: in sync, missing, extra, differing, duplicates, unconfirmed (exit 1 on drift, 3 when some could not be checked)',
  usage: 'moodsync status [--user SUB] [--json] [--concurrency N]',
  async run({ argv, env, stdout, stderr, signal }) {
    const { values } = parseArgs({ args: argv, options: commonOptions })
    const concurrency = concurrencyOf(values.concurrency, 4)
    const result = await withReconcile(env, stderr, signal, async (ctx) => runStatus(ctx, await subjectsFor(ctx, values.user), { concurrency, signal, progress: stderr }))
    report(stdout, values.json, result, () => humanStatus(result))
    return exitForCoverage(result, result.drift > 0)
  },
}

/** The headline: "in sync" only when every user/repo was checked and none drifted. */
function headline(result: StatusReport): string[] {
  const drifted = result.subjects.filter((s) => s.drift > 0).length
  const drift = `DRIFT: ${result.drift} moods or records out of sync across ${drifted} users/repos`
  if (complete(result)) return [result.drift === 0 ? `in sync: ${result.counts.inSync} moods across ${result.total} users/repos` : drift]
  const found = result.drift > 0 ? `${drift} (among the ${result.checked} checked)` : `no drift among the ${result.checked} users/repos checked (${result.counts.inSync} moods in sync); the others are unknown`
  return [...coverageLines(result), found]
}

function humanStatus(result: StatusReport): string {
  const name = (s: StatusReport['subjects'][number]) => `${s.user ?? s.did ?? '?'}${s.handle ? ` @${s.handle}` : ''}${s.inactive ? ` (${s.inactive})` : ''}`
  const rows = result.subjects.filter((s) => s.drift > 0 || result.subjects.length <= 20).map((s) => [name(s), ...COLUMNS.map(([key]) => s.counts[key])])
  const hidden = result.subjects.length - rows.length
  const lines = [...headline(result), '', table(['user / repo', ...COLUMNS.map(([, label]) => label)], [...rows, ['TOTAL', ...COLUMNS.map(([key]) => result.counts[key])]])]
  if (hidden > 0) lines.push(`(${hidden} users/repos without drift not listed; --json lists all)`)
  lines.push(
    '',
    'atproto only: record not in MongoDB (repair restores) · record gone: deleted on ATProto (repair marks deleted) · never written: no record yet (migrate/repair push)',
    'differs: MongoDB says otherwise (repair takes the record) · duplicates: extra records sharing a ref (dedupe --delete) · unconfirmed: outbox writes not seen on ATProto (repair retries)',
    'not drift: invalid, no ref (neither ref nor mongoId), legacy text (text instead of mood), oversize (over 5,000 bytes): records quarantined · legacy mongoId: valid records naming their mood by mongoId (moodsync normalize rewrites them, and legacy text ones that name their mood)',
    'too long: moods over 5,000 bytes the published schema refuses (migration marked them; shorten them to write them) · refused: moods it refuses for another reason',
    '(deactivated), (takendown), (suspended): the account is not active; its visible moods count as record gone (repair hides them)',
  )
  return lines.join('\n')
}
