import { PdsError } from '../atproto/xrpc.ts'
import { NoCredentialsError, WrongSecretError } from '../errors.ts'
import { Backoff } from '../retry.ts'

/** What to do with a write that did not go through (with a reason fit for a log or a caller). */
export type Verdict = { retry: true; delayMs: number; uncertain: boolean; reason: string } | { retry: false; reason: string }

/** Retry n of a write: 2 s doubling to an hour, jittered. */
const WRITE_BACKOFF = new Backoff({ baseMs: 2_000, maxMs: 3_600_000 })

/**
 * The writer's retry decision, in one place (the immediate attempt, the worker's flush and the
 * post's check before storing all ask here). Transient failures (network, timeout, 5xx, 429) and
 * a deactivated account come back later; a lost answer may hide a committed write (uncertain).
 * A key that cannot open the credentials is this process's configuration, not the change's
 * fault: the change waits for a process with the right key. A refusal or missing credentials is
 * final. Anything else is unexpected: retried as uncertain (the next try goes one by one with
 * putRecord, safe to repeat), so one odd failure never blocks the outbox behind it.
 */
export function writeVerdict(err: unknown, attempts: number, now = Date.now()): Verdict {
  const reason = err instanceof Error ? err.message : String(err)
  if (err instanceof NoCredentialsError) return { retry: false, reason }
  if (err instanceof WrongSecretError) return { retry: true, delayMs: WRITE_BACKOFF.delayFor(attempts), uncertain: false, reason }
  if (!(err instanceof PdsError)) return { retry: true, delayMs: WRITE_BACKOFF.delayFor(attempts), uncertain: true, reason }
  if (!err.transient && err.error !== 'AccountDeactivated') return { retry: false, reason }
  return { retry: true, delayMs: err.retryAt ? err.retryAt - now : WRITE_BACKOFF.delayFor(attempts), uncertain: err.status === 0 || err.status >= 500, reason }
}
