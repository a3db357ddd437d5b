import { parseArgs } from 'node:util'
import { backfill as runBackfill, type BackfillReport } from '../../reconcile/backfill.ts'
import { discoverRepos } from '../../reconcile/targets.ts'
import { UsageError, type Command } from '../command.ts'
import { byKind } from '../coverage.ts'
import { exitForRun } from '../exit-codes.ts'
import { report } from '../output.ts'
import { concurrencyOf, withReconcile } from './reconcile-context.ts'

export const backfill: Command = {
  name: 'backfill',
  summary: 'load moods from the repos themselves (verified), marking moods whose record is gone deleted; --dry-run changes nothing',
  usage: 'moodsync backfill (--did DID... | --user SUB | --all-users | --discover RELAY_URL | --queued) [--dry-run] [--force] [--concurrency N] [--json]',
  async run({ argv, env, stdout, stderr, signal }) {
    const { values } = parseArgs({
      args: argv,
      options: {
        did: { type: 'string', multiple: true },
        user: { type: 'string' },
        'all-users': { type: 'boolean', default: false },
        discover: { type: 'string' },
        queued: { type: 'boolean', default: false },
        force: { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
        concurrency: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    })
    const chosen = [values.did !== undefined, values.user !== undefined, values['all-users'], values.discover !== undefined, values.queued].filter(Boolean).length
    if (chosen !== 1) throw new UsageError('choose exactly one of --did, --user, --all-users, --discover, --queued')
    for (const did of values.did ?? []) if (!/^did:[a-z]+:[a-zA-Z0-9._:%-]+$/.test(did)) throw new UsageError(`not a DID: ${JSON.stringify(did)}`)
    if (values.discover !== undefined && !/^https?:\/\//.test(values.discover)) throw new UsageError('--discover takes the relay\'s http(s) URL')
    const concurrency = concurrencyOf(values.concurrency, 4)

    const result = await withReconcile(env, stderr, signal, async (ctx) => {
      const { users, backfill } = ctx.store
      let dids: string[] | AsyncIterable<string>
      if (values.did) dids = [...new Set(values.did)]
      else if (values.user !== undefined) dids = [await users.requireDid(values.user)]
      else if (values['all-users']) dids = await users.allDids()
      else if (values.queued) dids = (await backfill.list()).map((d) => d._id)
      else dids = discoverRepos(values.discover!, { signal })
      return runBackfill(ctx.sync, dids, { concurrency, force: values.force, dryRun: values['dry-run'], signal, progress: stderr, total: Array.isArray(dids) ? dids.length : undefined, log: ctx.log })
    })
    report(stdout, values.json, result, () => humanBackfill(result))
    return exitForRun({ interrupted: result.interrupted, uncheckedKinds: Object.keys(result.failures), problems: false })
  },
}

function humanBackfill(result: BackfillReport): string {
  const a = result.applied
  const r = result.repos
  const done = r.synced + r.unchanged + r.hidden + r.failed
  const lines: string[] = []
  if (result.interrupted) lines.push(`INTERRUPTED after ${done}${result.total === undefined ? '' : ` of ${result.total}`} repos: run the same command again to resume (finished repos are skipped)`)
  if (r.failed > 0) lines.push(`INCOMPLETE: ${r.failed} repos could not be read (${byKind(result.failures)})${result.failed.length < r.failed ? `; the first ${result.failed.length}:` : ':'}`, ...result.failed.map((f) => `  ${f.did}: ${f.kind}: ${f.message}`))
  const seconds = (result.elapsedMs / 1000).toFixed(1)
  if (result.dryRun) {
    lines.push(
      `backfill plan (dry run: nothing changed): ${r.synced} repos read, ${r.unchanged} unchanged since last read, ${r.hidden} not active, ${r.failed} failed, in ${seconds} s`,
      `would change: ${a.inserted} moods added, ${a.updated} updated, ${a.attached} linked to their MongoDB mood, ${a.deleted} marked deleted (record gone), ${result.hiddenMoods} hidden (account not active), ${result.restored} brought back (account active again), ${a.confirmed} writes confirmed, ${result.quarantined} records quarantined; ${a.unchanged} unchanged, ${a.pending} left to the outbox`,
    )
  } else {
    lines.push(
      `backfill: ${r.synced} repos read, ${r.unchanged} unchanged since last read, ${r.hidden} not active (${result.hiddenMoods} moods hidden), ${r.failed} failed, in ${seconds} s`,
      `moods: ${result.records} in the repos; ${a.inserted} added, ${a.updated} updated, ${a.attached} linked to their MongoDB mood, ${a.deleted} marked deleted (record gone), ${result.restored} brought back (account active again), ${a.confirmed} writes confirmed, ${a.unchanged} unchanged, ${a.pending} left to the outbox, ${result.quarantined} quarantined`,
    )
  }
  return lines.join('\n')
}
