import { PdsError } from '../atproto/xrpc.ts'
import type { Database } from '../store/database.ts'
import { MOOD_NSID } from '../sync/mood.ts'
import { WRITE_COST } from './budget.ts'
import type { WriterParts } from './outbox.ts'
import type { ForgetPlan } from './plans.ts'
import { MAX_WRITES } from './records.ts'

/**
 * Deleting records outright: a user's erasure (account deletion) and the duplicates `dedupe`
 * removes. Every applyWrites batch is paid from the account's budget first.
 */
export class Erasure {
  readonly #store: Database
  readonly #parts: WriterParts

  constructor(store: Database, parts: WriterParts) {
    this.#store = store
    this.#parts = parts
  }

  /**
   * Erases every mood of a user on both sides: all records of the collection in the repo, ours
   * or another client's, then the MongoDB documents. Resumable: run again after a failure, it
   * finishes the job.
   */
  async forget(input: { user: string }): Promise<{ recordsDeleted: number; documentsDeleted: number }> {
    const did = (await this.#store.users.didOf(input.user)) ?? null
    // Before the first change: a wrong key, missing credentials or a refused login stop the
    // erasure here, not halfway with the moods hidden and the records still in the repo.
    if (did) await this.#parts.sessions.prepare(input.user)
    // Written first: the indexer then drops late echoes of anything older than this moment.
    if (did) await this.#store.forgotten.mark(did, input.user, Date.now() * 1000)
    await this.#store.outbox.hideAllOf(input.user, did)
    let recordsDeleted = 0
    if (did) recordsDeleted = (await this.deleteRecords({ user: input.user, did, rkeys: await this.#listRkeys(did) })).deleted
    const documentsDeleted = await this.#store.outbox.removeAllOf(input.user, did)
    this.#parts.log.info({ user: input.user, recordsDeleted, documentsDeleted }, 'forgot a user')
    return { recordsDeleted, documentsDeleted }
  }

  /** What `forget` would erase, read from both sides; changes nothing. */
  async plan(input: { user: string }): Promise<ForgetPlan> {
    const did = (await this.#store.users.didOf(input.user)) ?? null
    const records = did ? (await this.#listRkeys(did)).length : 0
    return { user: input.user, did, records, documents: await this.#store.outbox.countAllOf(input.user, did) }
  }

  /**
   * Deletes records of the user's repo in applyWrites batches. Returns the rev of the last
   * commit, which orders the deletes against anything the indexer sees.
   */
  async deleteRecords(input: { user: string; did: string; rkeys: readonly string[] }): Promise<{ deleted: number; rev?: string }> {
    let deleted = 0
    let rev: string | undefined
    for (let i = 0; i < input.rkeys.length; i += MAX_WRITES) {
      const chunk = input.rkeys.slice(i, i + MAX_WRITES)
      const wait = this.#parts.budget.take(input.did, chunk.length * WRITE_COST.delete)
      if (wait > 0) throw new PdsError('applyWrites', 429, 'RateLimitExceeded', `budget exhausted for ${Math.ceil(wait / 1000)} s`, { retryAt: Date.now() + wait })
      const res = await this.#parts.sessions.call<{ commit?: { rev: string } }>(input.user, 'com.atproto.repo.applyWrites', {
        body: { repo: input.did, writes: chunk.map((rkey) => ({ $type: 'com.atproto.repo.applyWrites#delete', collection: MOOD_NSID, rkey })) },
      })
      rev = res.commit?.rev ?? rev
      deleted += chunk.length
    }
    return { deleted, rev }
  }

  async #listRkeys(did: string): Promise<string[]> {
    const rkeys: string[] = []
    let cursor: string | undefined
    do {
      const page = await this.#parts.client.call<{ records: { uri: string }[]; cursor?: string }>('com.atproto.repo.listRecords', {
        query: { repo: did, collection: MOOD_NSID, limit: '100', ...(cursor ? { cursor } : {}) },
      })
      rkeys.push(...page.records.map((r) => r.uri.split('/').pop()!))
      cursor = page.records.length > 0 ? page.cursor : undefined
    } while (cursor)
    return rkeys
  }
}
