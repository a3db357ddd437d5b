import { App } from '../../app/app.ts'
import { parseConfig, type Env } from '../../config.ts'
import { createLogger } from '../../logger.ts'
import type { ReconcileContext } from '../../reconcile/inspect.ts'
import type { Subject } from '../../store/users.ts'
import { UsageError } from '../command.ts'

/**
 * Opens the app for one reconcile run (MongoDB, the repo reader, the writer) and closes it
 * after, whatever happens. Logs go to stderr: stdout is the command's report.
 */
export async function withReconcile<T>(env: Env, stderr: NodeJS.WritableStream, signal: AbortSignal, work: (ctx: ReconcileContext) => Promise<T>): Promise<T> {
  const config = parseConfig(env)
  return App.using(config, { log: createLogger({ level: config.logLevel, destination: stderr as never }), signal }, async (app) => {
    await app.start()
    return work(app.reconcile)
  })
}

/** `--user SUB` names one subject; without it, everyone with moods on either side. */
export async function subjectsFor(ctx: ReconcileContext, user: string | undefined): Promise<Subject[]> {
  return user === undefined ? ctx.store.users.allSubjects() : [await ctx.store.users.subjectOf(user)]
}

export function concurrencyOf(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new UsageError(`--concurrency must be an integer from 1 to 64 (got ${JSON.stringify(value)})`)
  return n
}

export const commonOptions = {
  user: { type: 'string' as const },
  json: { type: 'boolean' as const, default: false },
  concurrency: { type: 'string' as const },
}
