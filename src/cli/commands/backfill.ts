import { parseArgs } from 'node:util'
import { backfill as runBackfill } from '../../reconcile/backfill.ts'
import { discoverRepos } from '../../reconcile/targets.ts'
import { UsageError, type Command } from '../command.ts'
import { report } from '../output.ts'
import { failureLine } from '../table.ts'
import { concurrencyOf, INTERRUPTED, withReconcile } from './reconcile-context.ts'

export const backfill: Command = {
  name: 'backfill',
  summary: 'load moods from the repos themselves (verified), marking moods whose record is gone deleted',
  usage: 'moodsync backfill (--did DID... | --user SUB | --all-users | --discover RELAY_URL | --queued) [--force] [--concurrency N] [--json]',
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
      return runBackfill(ctx.sync, dids, { concurrency, force: values.force, signal, progress: stderr, total: Array.isArray(dids) ? dids.length : undefined, log: ctx.log })
    })
    report(stdout, values.json, result, () => {
      const a = result.applied
      return [
        `backfill${result.interrupted ? ' (interrupted: run again to resume)' : ''}: ${result.repos.synced} repos read, ${result.repos.unchanged} unchanged since last read, ${result.repos.hidden} not active (moods hidden), ${result.repos.failed} failed, in ${(result.elapsedMs / 1000).toFixed(1)} s`,
        `moods: ${result.records} in the repos; ${a.inserted} added, ${a.updated} updated, ${a.attached} linked to their MongoDB mood, ${a.deleted} marked deleted (record gone), ${a.confirmed} writes confirmed, ${a.unchanged} unchanged, ${a.pending} left to the outbox, ${result.quarantined} quarantined`,
        failureLine(result.failures),
        ...result.failed.map((f) => `  ${f.did}: ${f.kind}: ${f.message}`),
      ].join('\n')
    })
    if (result.interrupted) return INTERRUPTED
    return result.repos.failed > 0 ? 1 : 0
  },
}
