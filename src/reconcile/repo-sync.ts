import { silentLogger, type Logger } from '../logger.ts'
import { UserDirectory } from '../ingest/users.ts'
import { COLLECTIONS, type BackfillDoc, type MoodDoc, type RepoStateDoc } from '../store/collections.ts'
import { MoodStore, type ApplyResult, type DeleteOp, type MoodOp } from '../store/moods.ts'
import type { Store } from '../store/store.ts'
import { RepoUnavailableError, type RepoReader, type RepoSnapshot } from './repo-reader.ts'
import { forgottenAt, snapshotOps } from './subjects.ts'

export interface RepoSyncResult {
  did: string
  /** `unchanged`: the repo is at the rev already read, nothing was done. `hidden`: the account is not active. */
  outcome: 'synced' | 'unchanged' | 'hidden'
  rev?: string
  records: number
  applied: ApplyResult
  quarantined: number
  bytes: number
}

const HIDE = new Set(['deactivated', 'takendown', 'suspended'])
/** Ops per apply call: bounded so one huge repo does not become one huge MongoDB batch. */
const APPLY_CHUNK = 1000

export function emptyApplyResult(): ApplyResult {
  return { inserted: 0, updated: 0, attached: 0, deleted: 0, unchanged: 0, stale: 0, confirmed: 0, pending: 0 }
}

export function addApplyResult(into: ApplyResult, more: ApplyResult): ApplyResult {
  for (const key of Object.keys(into) as (keyof ApplyResult)[]) into[key] += more[key]
  return into
}

/**
 * Brings one repo's moods in MongoDB to the repo's current state, through the indexer's apply
 * path: every record upserted, every live mood whose record is gone marked deleted (the deletes
 * a stream missed while it was down), the rev reached recorded so an unchanged repo costs one
 * small request next time, and the repo taken off the backfill queue.
 */
export class RepoSync {
  readonly #store: Store
  readonly #reader: RepoReader
  readonly #users: UserDirectory
  readonly #log: Logger

  constructor(opts: { store: Store; reader: RepoReader; log?: Logger }) {
    this.#store = opts.store
    this.#reader = opts.reader
    this.#users = new UserDirectory(opts.store.db, { ttlMs: 60_000 })
    this.#log = (opts.log ?? silentLogger).child({ component: 'repo-sync' })
  }

  get #repos() {
    return this.#store.db.collection<RepoStateDoc>(COLLECTIONS.repos)
  }

  async sync(did: string, opts: { force?: boolean } = {}): Promise<RepoSyncResult> {
    const result: RepoSyncResult = { did, outcome: 'synced', records: 0, applied: emptyApplyResult(), quarantined: 0, bytes: 0 }
    try {
      if (!opts.force) {
        const known = await this.#repos.findOne({ _id: did })
        if (known && (await this.#reader.latestRev(did)) === known.rev) {
          await this.#dequeue(did)
          return { ...result, outcome: 'unchanged', rev: known.rev, records: known.records }
        }
      }
      const snapshot = await this.#reader.read(did)
      await this.apply(snapshot, result)
    } catch (err) {
      if (!(err instanceof RepoUnavailableError) || !HIDE.has(err.kind)) throw err
      // The host says the account is not active: its moods leave the platform's reads until it is.
      const hidden = await this.#store.moods.hideDid(did, err.kind)
      // Forget the rev read: once the account is back, the next run must read it and restore.
      await this.#repos.deleteOne({ _id: did })
      this.#log.info({ did, status: err.kind, moods: hidden }, 'repo not active: moods hidden')
      await this.#dequeue(did)
      return { ...result, outcome: 'hidden' }
    }
    return result
  }

  /** Applies a snapshot already read (repair and migrate read first, then decide). */
  async apply(snapshot: RepoSnapshot, result: RepoSyncResult = { did: snapshot.did, outcome: 'synced', records: 0, applied: emptyApplyResult(), quarantined: 0, bytes: 0 }): Promise<RepoSyncResult> {
    const { did } = snapshot
    const moods = this.#store.moods
    // One read of the DID's documents (a scan on servers without the index) serves both checks.
    const known = await moods.collection.find(MoodStore.byDid(did), { projection: { 'atproto.rkey': 1, 'atproto.hidden': 1, deleted: 1 } }).toArray()
    const hidden = (doc: Pick<MoodDoc, 'atproto'>) => doc.atproto?.hidden !== undefined
    // The host served the repo, so the account is active: bring back what a status change hid.
    if (known.some(hidden)) await moods.restoreDid(did)
    const user = (await this.#users.resolve([did])).get(did) ?? null
    const { ops, rejected } = snapshotOps(snapshot, user, await forgottenAt(this.#store.db, did))
    const present = new Set(snapshot.records.map((r) => r.rkey))
    const deletes: DeleteOp[] = known
      .filter((doc) => !doc.deleted || hidden(doc))
      .map((doc) => doc.atproto?.rkey)
      .filter((rkey): rkey is string => rkey !== undefined && !present.has(rkey))
      .map((rkey) => ({ kind: 'delete', did, rkey, rev: snapshot.rev }))
    // Records MongoDB has never seen go down the insert-first path; the rest skip it.
    const seen = new Set(known.map((doc) => doc.atproto?.rkey))
    const fresh = ops.filter((op) => !seen.has(op.rkey))
    const again: MoodOp[] = [...ops.filter((op) => seen.has(op.rkey)), ...deletes]
    for (let i = 0; i < fresh.length; i += APPLY_CHUNK) addApplyResult(result.applied, await moods.apply(fresh.slice(i, i + APPLY_CHUNK)))
    for (let i = 0; i < again.length; i += APPLY_CHUNK) addApplyResult(result.applied, await moods.apply(again.slice(i, i + APPLY_CHUNK), { insertFirst: false }))
    await this.#store.quarantine.add(rejected)
    result.rev = snapshot.rev
    result.records = snapshot.records.length
    result.quarantined = rejected.length
    result.bytes = snapshot.bytes
    await this.#repos.updateOne({ _id: did }, { $set: { rev: snapshot.rev, via: snapshot.via, records: snapshot.records.length, syncedAt: new Date() } }, { upsert: true })
    await this.#dequeue(did)
    this.#log.debug({ did, rev: snapshot.rev, records: result.records, ...result.applied }, 'repo synced')
    return result
  }

  async #dequeue(did: string): Promise<void> {
    await this.#store.db.collection<BackfillDoc>(COLLECTIONS.backfill).deleteOne({ _id: did })
  }
}
