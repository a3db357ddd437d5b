import { parseArgs } from 'node:util'
import { repair as runRepair, type RepairPlan } from '../../reconcile/repair.ts'
import type { Command } from '../command.ts'
import { coverageLines } from '../coverage.ts'
import { exitForCoverage } from '../exit-codes.ts'
import { report } from '../output.ts'
import { table } from '../table.ts'
import { commonOptions, concurrencyOf, subjectsFor, withReconcile } from './reconcile-context.ts'

const ACTIONS: [keyof RepairPlan, string][] = [
  ['restore', 'restore'],
  ['update', 'update'],
  ['markDeleted', 'mark deleted'],
  ['push', 'push'],
  ['retry', 'retry'],
  ['confirm', 'confirm'],
  ['duplicates', 'dupes (dedupe)'],
]

export const repair: Command = {
  name: 'repair',
  summary: 'fix what status finds: ATProto wins on content, moods never written go out through the outbox',
  usage: 'moodsync repair [--user SUB] [--dry-run] [--json] [--concurrency N]',
  async run({ argv, env, stdout, stderr, signal }) {
    const { values } = parseArgs({ args: argv, options: { ...commonOptions, 'dry-run': { type: 'boolean', default: false } } })
    const concurrency = concurrencyOf(values.concurrency, 2)
    const dryRun = values['dry-run']
    const result = await withReconcile(env, stderr, signal, async (ctx) => runRepair(ctx, await subjectsFor(ctx, values.user), { dryRun, concurrency, signal, progress: stderr }))
    report(stdout, values.json, result, () => {
      const d = result.done
      const lines = [
        dryRun ? 'repair plan (dry run: nothing changed)' : 'repair',
        ...coverageLines(result, dryRun ? 'planned' : 'repaired'),
        '',
        table(['user / repo', ...ACTIONS.map(([, label]) => label)], [...result.subjects.map((s) => [s.user ?? s.did ?? '?', ...ACTIONS.map(([key]) => s.plan[key])]), ['TOTAL', ...ACTIONS.map(([key]) => result.plan[key])]]),
        '',
      ]
      if (!dryRun) {
        lines.push(
          `done: ${d.applied.inserted + d.applied.updated + d.applied.attached} moods restored or updated from ATProto, ${d.applied.deleted} marked deleted, ${d.applied.confirmed} confirmed; ` +
            `${d.queued} queued and ${d.flushed.written} written to ATProto (${d.flushed.deferred} deferred, ${d.flushed.failed + d.invalid} failed), ${d.confirmed} confirmed by reading back`,
        )
      }
      if (result.plan.duplicates > 0) lines.push(`${result.plan.duplicates} duplicate records left: run moodsync dedupe --delete`)
      return lines.join('\n')
    })
    return exitForCoverage(result, result.done.flushed.failed + result.done.invalid > 0)
  },
}
