import { parseConfig, type Env } from '../../config.ts'
import { createIdResolver } from '../../ingest/service.ts'
import { createLogger } from '../../logger.ts'
import type { ReconcileContext } from '../../reconcile/inspect.ts'
import { RepoReader } from '../../reconcile/repo-reader.ts'
import { RepoSync } from '../../reconcile/repo-sync.ts'
import { allSubjects, subjectOf, type Subject } from '../../reconcile/subjects.ts'
import { Store } from '../../store/store.ts'
import { Writer } from '../../writer/writer.ts'
import { UsageError } from '../command.ts'

/**
 * Opens what the reconcile commands need for one run (MongoDB, the repo reader, the writer)
 * and closes it after, whatever happens. Logs go to stderr: stdout is the command's report.
 */
export async function withReconcile<T>(env: Env, stderr: NodeJS.WritableStream, signal: AbortSignal, work: (ctx: ReconcileContext) => Promise<T>): Promise<T> {
  const config = parseConfig(env)
  const log = createLogger({ level: config.logLevel, destination: stderr as never })
  const store = new Store({ mongodb: config.mongodb, logger: log })
  await store.start()
  try {
    const reader = new RepoReader({ idResolver: createIdResolver(config.plcUrl), log, signal })
    const ctx: ReconcileContext = { store, reader, sync: new RepoSync({ store, reader, log }), writer: new Writer(store.db, { pdsUrl: config.pdsUrl, secret: config.secret, log }), log }
    return await work(ctx)
  } finally {
    await store.destroy()
  }
}

/** `--user SUB` names one subject; without it, everyone with moods on either side. */
export async function subjectsFor(ctx: ReconcileContext, user: string | undefined): Promise<Subject[]> {
  return user === undefined ? allSubjects(ctx.store.db) : [await subjectOf(ctx.store.db, user)]
}

export function concurrencyOf(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new UsageError(`--concurrency must be an integer from 1 to 64 (got ${JSON.stringify(value)})`)
  return n
}

/** Exit code of a run that was cut short by SIGINT/SIGTERM (128 + SIGINT). */
export const INTERRUPTED = 130

export const commonOptions = {
  user: { type: 'string' as const },
  json: { type: 'boolean' as const, default: false },
  concurrency: { type: 'string' as const },
}
