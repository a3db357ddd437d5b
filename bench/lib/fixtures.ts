import { readFileSync } from 'node:fs'
import { clientRef } from '../../rig/client-ref.ts'
/**
 * The bench library, part 3: deterministic fake data (the same bytes every run): TIDs, mood
 * commits, Jetstream v1 frames, and the soak's create/update/delete stream. Also imported by
 * the frame server's thread or process, which builds frames from these where it runs.
 */
import { MOOD_NSID } from '../../src/sync/mood.ts'

const S32 = '234567abcdefghijklmnopqrstuvwxyz'
const B32 = 'abcdefghijklmnopqrstuvwxyz234567'
const MOODS = ['happy', 'tired but ok', 'listening to the rain 🌧️', 'coding all night', 'feeling ✨ sparkly ✨', 'meh', 'excited for the weekend!!', 'drawing pixels on aesthetic.computer', 'calm', 'a bit lost, a bit found 🌊', 'coffee ☕ then more coffee', 'grateful 🙏']

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function s32(value: number, width: number): string {
  let out = ''
  for (let i = 0; i < width; i++) {
    out = S32[value % 32]! + out
    value = Math.floor(value / 32)
  }
  return out
}

/** An ATProto TID: 11 characters of microseconds, 2 of clock id. */
export function tid(us: number, clock: number): string {
  return s32(us, 11) + s32(clock, 2)
}

function chars(random: () => number, length: number): string {
  let out = ''
  for (let i = 0; i < length; i++) out += B32[Math.floor(random() * 32)]
  return out
}

export interface FakeCommit {
  did: string
  /** Jetstream cursor, increasing. */
  timeUs: number
  rev: string
  rkey: string
  cid: string
  mood: string
  /** ISO datetime with timezone. */
  when: string
}

/** `count` mood creations over min(10,000, count/4) DIDs, in time order, with unique TID rkeys. */
export function fakeCommits(count: number, seed = 0x600d): FakeCommit[] {
  const random = mulberry32(seed)
  const dids = Array.from({ length: Math.max(1, Math.min(10_000, count >> 2)) }, () => `did:plc:${chars(random, 24)}`)
  const out = new Array<FakeCommit>(count)
  let us = Date.now() * 1000 - count * 50
  for (let i = 0; i < count; i++) {
    us += 1 + Math.floor(random() * 80)
    out[i] = { did: dids[Math.floor(random() * dids.length)]!, timeUs: us, rev: tid(us - 1_000, i % 1024), rkey: tid(us - 2_000, i % 1024), cid: `bafyrei${chars(random, 52)}`, mood: MOODS[i % MOODS.length]!, when: new Date(Math.floor(us / 1000) - 3_000).toISOString() }
  }
  return out
}

/** Jetstream v1 commit-create frames of `fakeCommits(count)`. */
export function jetstreamFrames(args: { count: number }): string[] {
  return fakeCommits(args.count).map((c) =>
    JSON.stringify({ did: c.did, time_us: c.timeUs, kind: 'commit', commit: { rev: c.rev, operation: 'create', collection: MOOD_NSID, rkey: c.rkey, record: { $type: MOOD_NSID, ref: clientRef(), mood: c.mood, when: c.when }, cid: c.cid } }),
  )
}

// ---------------------------------------------------------------------------------------------
// The soak stream: event i has time_us = baseUs + i and acts on record i % records, owned by
// DID (i % records) % dids; pass floor(i / records) creates, updates or deletes every record.

export interface SoakPlan {
  events: number
  records: number
  dids: number
  baseUs: number
}

export const soak = {
  operation: (plan: SoakPlan, i: number) => (['create', 'update', 'delete'] as const)[Math.floor(i / plan.records) % 3]!,
  did: (plan: SoakPlan, record: number) => `did:plc:soak${String(record % plan.dids).padStart(20, '0')}`,
  /** A TID a day before the stream starts, one microsecond apart per record. */
  rkey: (plan: SoakPlan, record: number) => tid(plan.baseUs - 86_400_000_000 + record, 0),
  mood: (i: number) => `${MOODS[i % MOODS.length]} #${i}`,
  when: (plan: SoakPlan, i: number) => new Date(Math.floor(plan.baseUs / 1000) - 60_000 + i).toISOString(),
}

/** The soak's frames, built one at a time as they are sent (a million do not sit in memory). */
export function* soakFrames(plan: SoakPlan): Generator<string> {
  for (let i = 0; i < plan.events; i++) {
    const timeUs = plan.baseUs + i
    const record = i % plan.records
    const operation = soak.operation(plan, i)
    const commit: Record<string, unknown> = { rev: tid(timeUs, 1), operation, collection: MOOD_NSID, rkey: soak.rkey(plan, record) }
    if (operation !== 'delete') {
      commit.record = { $type: MOOD_NSID, ref: clientRef(), mood: soak.mood(i), when: soak.when(plan, i) }
      commit.cid = `bafyreisoak${'a'.repeat(36)}${tid(i, 0).slice(1)}`
    }
    yield JSON.stringify({ did: soak.did(plan, record), time_us: timeUs, kind: 'commit', commit })
  }
}

/** Length-prefixed frames, one file. */
export function encodeFrames(frames: readonly Buffer[]): Buffer {
  const parts: Buffer[] = []
  for (const frame of frames) {
    const length = Buffer.alloc(4)
    length.writeUInt32BE(frame.length)
    parts.push(length, frame)
  }
  return Buffer.concat(parts)
}

export function decodeFrames(bytes: Buffer): Buffer[] {
  const frames: Buffer[] = []
  for (let p = 0; p < bytes.length; ) {
    const length = bytes.readUInt32BE(p)
    frames.push(bytes.subarray(p + 4, p + 4 + length))
    p += 4 + length
  }
  return frames
}

/** For the frame server in another thread or process (FrameSpec): a recorded capture's frames, from its file. */
export function captureFrames(args: { file: string }): Buffer[] {
  return decodeFrames(readFileSync(args.file))
}
