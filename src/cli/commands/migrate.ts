import { parseArgs } from 'node:util'
import { migrate as runMigrate } from '../../reconcile/migrate.ts'
import type { Command } from '../command.ts'
import { coverageLines } from '../coverage.ts'
import { exitForCoverage } from '../exit-codes.ts'
import { report } from '../output.ts'
import { commonOptions, concurrencyOf, subjectsFor, withReconcile } from './reconcile-context.ts'

export const migrate: Command = {
  name: 'migrate',
  summary: 'push moods that have no ATProto record yet through the outbox (batched, resumable, idempotent)',
  usage: 'moodsync migrate [--user SUB] [--dry-run] [--json] [--concurrency N]',
  async run({ argv, env, stdout, stderr, signal }) {
    const { values } = parseArgs({ args: argv, options: { ...commonOptions, 'dry-run': { type: 'boolean', default: false } } })
    const concurrency = concurrencyOf(values.concurrency, 2)
    const dryRun = values['dry-run']
    const result = await withReconcile(env, stderr, signal, async (ctx) => runMigrate(ctx, await subjectsFor(ctx, values.user), { dryRun, concurrency, signal, progress: stderr }))
    report(stdout, values.json, result, () => {
      const f = result.flushed
      return [
        ...coverageLines(result, dryRun ? 'planned' : 'migrated'),
        dryRun
          ? `migrate plan (dry run: nothing changed): ${result.queued} moods to write, ${result.resumed} already queued, ${result.linked} to link to records that already exist`
          : `migrate: ${result.linked} linked to existing records, ${result.queued} queued (+${result.resumed} from an earlier run); ${f.written} written, ${f.deferred} deferred (retried by the worker or the next run), ${f.failed + result.invalid} failed; ${result.confirmed} confirmed by reading back`,
        `${result.noAccount} moods belong to users without an ATProto account`,
      ].join('\n')
    })
    return exitForCoverage(result, result.flushed.failed + result.invalid > 0)
  },
}
