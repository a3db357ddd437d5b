import type { IndexerStore } from '../src/ingest/indexer.ts'
import { emptyApplyResult, type ApplyResult, type RecordOp } from '../src/store/ops.ts'
import type { SavedPosition } from '../src/store/cursors.ts'
import type { QuarantineEntry } from '../src/store/quarantine.ts'

/**
 * An in-memory IndexerStore for unit tests and benchmarks that measure the indexer without a
 * MongoDB-wire server. Not a model of MongoDB: it keeps the newest op per (collection, DID,
 * rkey) and counts what it was asked to do, which is what those callers check. Integration
 * tests use the real store (src/store/) on a real server.
 */
export class MemoryStore implements IndexerStore {
  readonly #tables = new Map<string, Map<string, RecordOp<object>>>()
  readonly quarantined: QuarantineEntry[] = []
  readonly queued = new Set<string>()
  /** DID -> platform user, for what `users.resolve` answers. */
  readonly owners = new Map<string, string>()
  readonly applied: ApplyResult = emptyApplyResult()
  #cursors = new Map<string, SavedPosition>()
  batches = 0
  /** False: a no-op sink that counts the ops (upserts as inserted) and keeps none, for a bench of what comes before the store. */
  readonly #keep: boolean

  constructor(opts: { keep?: boolean } = {}) {
    this.#keep = opts.keep ?? true
  }
  /** What the account events asked of each collection, in order (records are not hidden here). */
  readonly accountChanges: { action: 'hide' | 'restore' | 'delete'; status?: string; dids: string[] }[] = []

  readonly cursors = {
    get: async (id: string) => this.#cursors.get(id),
    save: async (id: string, position: SavedPosition) => void this.#cursors.set(id, position),
  }
  readonly quarantine = { add: async (entries: readonly QuarantineEntry[]) => void this.quarantined.push(...entries) }
  readonly gaps = { record: async () => 0 }
  readonly backfill = {
    add: async (dids: readonly string[]) => {
      for (const did of dids) this.queued.add(did)
      return dids.length
    },
  }
  readonly users = {
    resolve: async (dids: Iterable<string>) => new Map([...new Set(dids)].map((did) => [did, this.owners.get(did) ?? null])),
    invalidate: () => {},
  }
  readonly forgotten = { since: async () => new Map<string, number>() }
  readonly handles = new Map<string, string>()
  readonly identities = {
    set: async (entries: readonly { did: string; handle: string }[]) => {
      for (const e of entries) this.handles.set(e.did, e.handle)
    },
  }

  records(collection: string) {
    let docs = this.#tables.get(collection)
    if (!docs) this.#tables.set(collection, (docs = new Map()))
    const table = docs
    return {
      apply: async (ops: readonly RecordOp<object>[]) => {
        this.batches++
        const done = emptyApplyResult()
        if (!this.#keep) for (const op of ops) op.kind === 'delete' ? done.deleted++ : done.inserted++
        else for (const op of ops) {
          const key = `${op.did}\u0000${op.rkey}`
          const prev = table.get(key)
          if (prev && prev.rev > op.rev) done.stale++
          else if (op.kind === 'delete') done.deleted++
          else if (prev) done.updated++
          else done.inserted++
          if (!prev || prev.rev <= op.rev) table.set(key, op)
        }
        for (const k of Object.keys(done) as (keyof ApplyResult)[]) this.applied[k] += done[k]
        return done
      },
      hasDid: async (did: string) => [...table.values()].some((op) => op.did === did),
      withDocuments: async (dids: readonly string[]) => new Set(dids.filter((did) => [...table.values()].some((op) => op.did === did))),
      hideDids: async (dids: readonly string[], status: string) => this.#account({ action: 'hide', status, dids: [...dids] }),
      restoreDids: async (dids: readonly string[]) => this.#account({ action: 'restore', dids: [...dids] }),
      deleteDids: async (dids: readonly string[]) => this.#account({ action: 'delete', dids: [...dids] }),
    }
  }

  #account(change: MemoryStore['accountChanges'][number]): number {
    this.accountChanges.push(change)
    return 0
  }

  /** Records now live (upserted last) in a collection. */
  live(collection: string): number {
    return [...(this.#tables.get(collection)?.values() ?? [])].filter((op) => op.kind === 'upsert').length
  }
}
