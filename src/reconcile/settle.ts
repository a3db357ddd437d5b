import type { FlushResult } from '../writer/writer.ts'
import type { Writer } from '../writer/writer.ts'
import { inspect, type ReconcileContext } from './inspect.ts'
import type { Subject } from '../store/users.ts'

/** Flushes the outbox (one user's part of it) until nothing due is left or nothing moves. */
export async function flushOutbox(writer: Writer, user: string | undefined): Promise<FlushResult> {
  const total: FlushResult = { written: 0, deferred: 0, failed: 0, retried: 0 }
  for (let round = 0; round < 100; round++) {
    const res = await writer.flush({ user })
    total.written += res.written
    total.deferred += res.deferred
    total.failed += res.failed
    total.retried += res.retried
    if (res.written === 0) break
  }
  return total
}

/**
 * After writing, reads the repo back and marks confirmed each written mood whose record is
 * there with the CID we wrote: the check the indexer's echo makes, done now so the command
 * ends in a known state even when no indexer runs.
 */
export async function confirmWritten(ctx: ReconcileContext, subject: Subject): Promise<number> {
  if (subject.did === null) return 0
  const { diff } = await inspect(ctx, subject)
  if (diff.confirmable.length === 0) return 0
  return (await ctx.store.moods.apply(diff.confirmable)).confirmed
}
