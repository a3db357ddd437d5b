import type { Database } from '../store/database.ts'
import type { SecretBox } from './secret-box.ts'

export interface RotationReport {
  credentials: { resealed: number; current: number; unreadable: number }
  sessions: { resealed: number; current: number; dropped: number }
  /** Users whose sealed password no key opens: left as they are (their only copy may be this). */
  unreadableUsers: string[]
  /** Values a writer kept changing while this ran (five times over): run the command again. */
  busy: number
}

/** How often one value is re-read when a writer changed it between our read and our write. */
const MAX_TRIES = 5

/**
 * Re-seals every sealed password and session under the box's current key (MOODSYNC_SECRET),
 * reading each with the current or the previous key (MOODSYNC_SECRET_PREVIOUS). Each value is
 * replaced with a compare-and-swap on what was read, so a writer sealing something new at the
 * same moment is never overwritten. Idempotent and resumable: a value already under the current
 * key is counted and left alone, so an interrupted run is finished by running it again.
 */
export async function rotateSecret(store: Database, box: SecretBox): Promise<RotationReport> {
  const report: RotationReport = { credentials: { resealed: 0, current: 0, unreadable: 0 }, sessions: { resealed: 0, current: 0, dropped: 0 }, unreadableUsers: [], busy: 0 }
  for await (const { user, password } of store.credentials.allSealed()) {
    const { outcome } = await reseal(box, password, (from, to) => store.credentials.resealIf(user, from, to), async () => (await store.credentials.sealed(user))?.password)
    if (outcome === 'unreadable') report.unreadableUsers.push(user)
    if (outcome === 'busy') report.busy++
    else if (outcome !== 'gone') report.credentials[outcome]++
  }
  for await (const { user, tokens } of store.sessions.all()) {
    const { outcome, judged } = await reseal(box, tokens, (from, to) => store.sessions.resealIf(user, from, to), () => store.sessions.get(user))
    // A session is a cache of a login: one no key opens is dropped, the writer logs in again.
    if (outcome === 'unreadable') {
      if (await store.sessions.dropIf(user, judged)) report.sessions.dropped++
    } else if (outcome === 'busy') report.busy++
    else if (outcome !== 'gone') report.sessions[outcome]++
  }
  return report
}

type Outcome = 'resealed' | 'current' | 'unreadable' | 'gone' | 'busy'

/** One value: re-sealed, already current, unreadable (`judged` is the value found so), gone, or busy. */
async function reseal(box: SecretBox, first: string, swap: (from: string, to: string) => Promise<boolean>, reread: () => Promise<string | undefined>): Promise<{ outcome: Outcome; judged: string }> {
  let sealed = first
  for (let i = 0; i < MAX_TRIES; i++) {
    let opened: { plaintext: string; current: boolean }
    try {
      opened = box.unseal(sealed)
    } catch {
      return { outcome: 'unreadable', judged: sealed }
    }
    if (opened.current) return { outcome: 'current', judged: sealed }
    if (await swap(sealed, box.seal(opened.plaintext))) return { outcome: 'resealed', judged: sealed }
    // Changed since we read it (a login, a new password): read it again and judge that.
    const next = await reread()
    if (next === undefined) return { outcome: 'gone', judged: sealed }
    sealed = next
  }
  return { outcome: 'busy', judged: sealed }
}
