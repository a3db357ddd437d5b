import { parseArgs } from 'node:util'
import { normalize as runNormalize } from '../../reconcile/normalize.ts'
import type { Command } from '../command.ts'
import { coverageLines } from '../coverage.ts'
import { exitForCoverage } from '../exit-codes.ts'
import { report } from '../output.ts'
import { commonOptions, concurrencyOf, subjectsFor, withReconcile } from './reconcile-context.ts'

const LISTED = 20

export const normalize: Command = {
  name: 'normalize',
  summary: "rewrite legacy records valid (mongoId -> ref, text -> mood) with putRecord, same rkey; list every other invalid record",
  usage: 'moodsync normalize [--user SUB] [--dry-run] [--json] [--concurrency N]',
  async run({ argv, env, stdout, stderr, signal }) {
    const { values } = parseArgs({ args: argv, options: { ...commonOptions, 'dry-run': { type: 'boolean', default: false } } })
    const concurrency = concurrencyOf(values.concurrency, 2)
    const dryRun = values['dry-run']
    const result = await withReconcile(env, stderr, signal, async (ctx) => runNormalize(ctx, await subjectsFor(ctx, values.user), { dryRun, concurrency, signal, progress: stderr }))
    report(stdout, values.json, result, () => {
      const byShape = new Map<string, number>()
      for (const c of result.changes) byShape.set(c.legacy, (byShape.get(c.legacy) ?? 0) + 1)
      const shapes = [...byShape].map(([shape, n]) => `${n} ${shape}`).join(', ')
      const lines = [
        ...coverageLines(result, dryRun ? 'planned' : 'normalized'),
        dryRun
          ? `normalize plan (dry run: nothing changed): ${result.rewritten} legacy records to rewrite${shapes ? ` (${shapes})` : ''}`
          : `normalize: ${result.rewritten} legacy records rewritten${shapes ? ` (${shapes})` : ''}; MongoDB: ${result.applied.updated} updated, ${result.applied.attached} attached, ${result.applied.inserted} inserted`,
      ]
      for (const c of result.changes.slice(0, LISTED)) lines.push(`  ${dryRun ? 'would rewrite' : 'rewrote'} ${c.user} ${c.did}/${c.rkey} (${c.legacy})${c.to ? ` ${c.from} -> ${c.to}` : ''}`)
      if (result.failed.length > 0) lines.push(`${result.failed.length} legacy records the PDS did not take:`, ...result.failed.slice(0, LISTED).map((r) => `  ${r.user} ${r.did}/${r.rkey}: ${r.reason}`))
      lines.push(`${result.left.length} invalid records left as they are (not only legacy)${result.left.length > 0 ? ':' : ''}`, ...result.left.slice(0, LISTED).map((r) => `  ${r.user ?? '?'} ${r.did}/${r.rkey}: ${r.reason}`))
      if (result.left.length > LISTED || result.changes.length > LISTED || result.failed.length > LISTED) lines.push(`(the first ${LISTED} of each; --json lists all)`)
      return lines.join('\n')
    })
    return exitForCoverage(result, result.failed.length > 0)
  },
}
