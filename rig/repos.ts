import type { Db } from 'mongodb'
import { MOOD_NSID, parseMood } from '../src/sync/mood.ts'
import { COLLECTIONS, type MoodDoc } from '../src/store/collections.ts'
import type { TestAccount } from './network.ts'

export interface Comparison {
  missing: string[]
  extra: string[]
  stale: string[]
  duplicates: string[]
}

/** What each repo holds (valid moods only) against MongoDB's live documents for it. */
export async function compareWithRepos(db: Db, accounts: readonly TestAccount[]): Promise<Comparison> {
  const out: Comparison = { missing: [], extra: [], stale: [], duplicates: [] }
  for (const account of accounts) {
    const records = new Map<string, { cid: string; mood: string }>()
    let cursor: string | undefined
    do {
      const page = await account.agent.com.atproto.repo.listRecords({ repo: account.did, collection: MOOD_NSID, limit: 100, cursor })
      for (const r of page.data.records) {
        const parsed = parseMood(r.value)
        if (parsed.ok) records.set(r.uri.split('/').pop()!, { cid: r.cid, mood: parsed.value.mood })
      }
      cursor = page.data.cursor
    } while (cursor)
    const docs = await db.collection<MoodDoc>(COLLECTIONS.moods).find({ 'atproto.did': account.did, deleted: { $ne: true } }).toArray()
    const seen = new Set<string>()
    for (const doc of docs) {
      const rkey = doc.atproto?.rkey ?? ''
      const key = `${account.did}/${rkey}`
      if (seen.has(rkey)) out.duplicates.push(key)
      seen.add(rkey)
      const record = records.get(rkey)
      if (!record) out.extra.push(key)
      else if (record.cid !== doc.atproto?.cid || record.mood !== doc.mood) out.stale.push(key)
    }
    for (const rkey of records.keys()) if (!seen.has(rkey)) out.missing.push(`${account.did}/${rkey}`)
  }
  return out
}

export const inSync = (c: Comparison) => c.missing.length + c.extra.length + c.stale.length + c.duplicates.length === 0
