import { PdsError } from '../atproto/xrpc.ts'
import { MOOD_NSID } from '../sync/mood.ts'
import { WRITE_COST } from './budget.ts'
import type { WriterParts } from './outbox.ts'

/**
 * Rewrites one record in place (`moodsync normalize`): `putRecord` under the same rkey, swapped
 * on the CID it was read at, so a record changed meanwhile is refused (`InvalidSwap`) instead of
 * overwritten. Paid from the account's budget first (an update: 2 points).
 */
export async function rewriteRecord(parts: WriterParts, input: { user: string; did: string; rkey: string; record: Record<string, unknown>; swapCid: string }): Promise<{ cid: string; rev?: string }> {
  const wait = parts.budget.take(input.did, WRITE_COST.update)
  if (wait > 0) throw new PdsError('com.atproto.repo.putRecord', 429, 'RateLimitExceeded', `budget exhausted for ${Math.ceil(wait / 1000)} s`, { retryAt: Date.now() + wait })
  const res = await parts.sessions.call<{ cid: string; commit?: { rev: string } }>(input.user, 'com.atproto.repo.putRecord', {
    body: { repo: input.did, collection: MOOD_NSID, rkey: input.rkey, record: input.record, swapRecord: input.swapCid },
  })
  return { cid: res.cid, ...(res.commit?.rev === undefined ? {} : { rev: res.commit.rev }) }
}
