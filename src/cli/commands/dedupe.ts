import { parseArgs } from 'node:util'
import { dedupe as runDedupe } from '../../reconcile/dedupe.ts'
import type { Command } from '../command.ts'
import { coverageLines } from '../coverage.ts'
import { exitForCoverage } from '../exit-codes.ts'
import { report } from '../output.ts'
import { commonOptions, concurrencyOf, subjectsFor, withReconcile } from './reconcile-context.ts'

export const dedupe: Command = {
  name: 'dedupe',
  summary: 'list ATProto records sharing a ref; with --delete keep the one MongoDB points to (or the oldest) and delete the rest',
  usage: 'moodsync dedupe [--user SUB] [--delete] [--json] [--concurrency N]',
  async run({ argv, env, stdout, stderr, signal }) {
    const { values } = parseArgs({ args: argv, options: { ...commonOptions, delete: { type: 'boolean', default: false } } })
    const concurrency = concurrencyOf(values.concurrency, 2)
    const result = await withReconcile(env, stderr, signal, async (ctx) => runDedupe(ctx, await subjectsFor(ctx, values.user), { delete: values.delete, concurrency, signal, progress: stderr }))
    report(stdout, values.json, result, () => {
      const lines = [...coverageLines(result, values.delete ? 'deduplicated' : 'checked'), `${result.duplicates} duplicate records in ${result.groups} groups across ${result.subjects.length} repos`]
      for (const s of result.subjects) {
        lines.push(`  ${s.user ?? s.did} (${s.did}): ${s.groups.length} groups`)
        for (const g of s.groups.slice(0, 5)) lines.push(`    ref ${g.ref}: keep ${g.keep}, ${values.delete ? 'delete' : 'would delete'} ${g.drop.join(' ')}`)
        if (s.groups.length > 5) lines.push(`    … ${s.groups.length - 5} more groups (--json lists all)`)
      }
      lines.push(
        values.delete ? `deleted ${result.deleted} records; ${result.moodsMarkedDeleted} MongoDB moods that mirrored them marked deleted` : result.duplicates > 0 ? 'nothing deleted: run again with --delete' : 'nothing to do',
      )
      return lines.join('\n')
    })
    return exitForCoverage(result, false)
  },
}
