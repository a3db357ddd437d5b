import { Secp256k1Keypair, type Keypair } from '@atproto/crypto'
import { cidForLex, encode } from '@atproto/lex-cbor'
import { BlockMap, blocksToCarFile, MemoryBlockstore, Repo, WriteOpAction, type RecordWriteOp } from '@atproto/repo'
import { beforeAll, describe, expect, it } from 'vitest'
import { FirehoseSource } from '../../src/ingest/firehose.ts'
import { emptyScan, FrameScanner } from '../../src/ingest/firehose-scan.ts'
import type { IngestEvent } from '../../src/ingest/events.ts'

const MOOD = 'computer.aesthetic.mood'
const POST = 'app.bsky.feed.post'
const DID = 'did:plc:chainchainchainchainchain'

/**
 * Real signed sync 1.1 commits (@atproto/repo), framed as a relay frames them: the chain
 * check, the native signature check and the byte scan all run on what a PDS produces. Frames
 * built here, not read off the rig's relay, because no real relay can be made to drop a commit
 * (the benches check the relay's own stream raises no break: firehose-path's `chain breaks`).
 */
class Author {
  seq = 0
  readonly keypair: Keypair
  #repo!: Repo
  constructor(keypair: Keypair) {
    this.keypair = keypair
  }

  async start(): Promise<void> {
    this.#repo = await Repo.create(new MemoryBlockstore(), DID, this.keypair)
  }

  /** One commit of `ops` (each a collection and a text), as a #commit frame. */
  async commit(...ops: { collection: string; text: string; rkey?: string }[]): Promise<Buffer> {
    const writes: RecordWriteOp[] = []
    const frameOps = []
    for (const op of ops) {
      const rkey = op.rkey ?? `3k${String(this.seq).padStart(3, '0')}${Math.random().toString(36).slice(2, 10)}`.slice(0, 13)
      const record = op.collection === MOOD ? { $type: MOOD, mood: op.text, when: new Date().toISOString(), ref: `client:${rkey}` } : { $type: op.collection, text: op.text, createdAt: new Date().toISOString() }
      writes.push({ action: WriteOpAction.Create, collection: op.collection, rkey, record } as RecordWriteOp)
      frameOps.push({ action: 'create', path: `${op.collection}/${rkey}`, cid: await cidForLex(record as never) })
    }
    const prevData = this.#repo.data.pointer
    const commit = await this.#repo.formatCommit(writes, this.keypair)
    this.#repo = await this.#repo.applyCommit(commit)
    const blocks = new BlockMap()
    blocks.addMap(commit.newBlocks)
    blocks.addMap(commit.relevantBlocks)
    const body = {
      seq: ++this.seq,
      rebase: false,
      tooBig: false,
      repo: DID,
      commit: commit.cid,
      rev: commit.rev,
      since: commit.since,
      blocks: await blocksToCarFile(commit.cid, blocks),
      ops: frameOps,
      blobs: [],
      prevData,
      time: new Date().toISOString(),
    }
    return Buffer.concat([encode({ op: 1, t: '#commit' } as never), encode(body as never)])
  }
}

const sourceFor = (key: () => string) =>
  new FirehoseSource({ url: 'ws://127.0.0.1:1/xrpc/com.atproto.sync.subscribeRepos', idResolver: { did: { resolveAtprotoKey: async () => key() } } as never })

let author: Author
let frames: { mood1: Buffer; post1: Buffer; post2: Buffer; mood2: Buffer; post3: Buffer }

beforeAll(async () => {
  author = new Author(await Secp256k1Keypair.create())
  await author.start()
  frames = {
    mood1: await author.commit({ collection: MOOD, text: 'first' }),
    post1: await author.commit({ collection: POST, text: 'a post' }),
    post2: await author.commit({ collection: 'app.bsky.feed.like', text: 'a like' }, { collection: POST, text: 'and a post' }),
    mood2: await author.commit({ collection: MOOD, text: 'second' }),
    post3: await author.commit({ collection: POST, text: 'later' }),
  }
})

const kinds = (events: IngestEvent[]) => events.map((e) => (e.kind === 'skip' && e.count ? `skip x${e.count}` : e.kind))

describe('the firehose byte scan', () => {
  it('reads what the decoder reads from real commit frames', async () => {
    const scanner = new FrameScanner([`${MOOD}/`])
    const scan = emptyScan()
    for (const [name, frame] of Object.entries(frames)) {
      expect(scanner.scanCommit(frame, scan), name).toBe(true)
      expect(scan.ours, name).toBe(name.startsWith('mood'))
      expect(frame.toString('latin1', scan.repo[0], scan.repo[1])).toBe(DID)
    }
  })

  it('never skips a frame the decoder would keep, whatever the bytes (10,000 mutations)', async () => {
    const scanner = new FrameScanner([`${MOOD}/`])
    const scan = emptyScan()
    const decoder = sourceFor(() => author.keypair.did())
    let seed = 42
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
    let skipped = 0
    for (let i = 0; i < 10_000; i++) {
      const base = i % 2 === 0 ? frames.mood1 : frames.post2
      const frame = Buffer.from(base)
      const mutation = i % 3
      if (mutation === 0) frame[Math.floor(random() * frame.length)] = Math.floor(random() * 256)
      const bytes = mutation === 1 ? frame.subarray(0, Math.floor(random() * frame.length)) : frame
      if (!scanner.scanCommit(bytes, scan) || scan.ours) continue
      skipped++
      const decoded = await decoder.parseFrame(bytes)
      expect(decoded.filter((e) => e.kind === 'commit')).toEqual([])
    }
    expect(skipped).toBeGreaterThan(1000)
  })
})

describe('FirehoseSource on signed commits', () => {
  it('verifies a kept commit natively and refuses it under another key', async () => {
    const source = sourceFor(() => author.keypair.did())
    const [event] = await source.parseFrames([frames.mood1])
    expect(event).toMatchObject({ kind: 'commit', did: DID, ops: [{ action: 'upsert', collection: MOOD, record: { mood: 'first' } }] })
    expect(source.stats.verifiedCommits).toBe(1)
    const other = (await Secp256k1Keypair.create()).did()
    const impostor = sourceFor(() => other)
    expect(await impostor.parseFrames([frames.mood1])).toMatchObject([{ kind: 'invalid', reason: expect.stringMatching(/invalid signature/) }])
  })

  it('a run of foreign commits is one skip with the last seq and how many', async () => {
    const source = sourceFor(() => author.keypair.did())
    const events = await source.parseFrames([frames.post1, frames.post2, frames.post3])
    expect(events).toEqual([{ kind: 'skip', cursor: 5, count: 3, emittedAt: expect.any(Number) }])
  })

  it('an unbroken chain, foreign commits included, queues nothing', async () => {
    const source = sourceFor(() => author.keypair.did())
    const events = await source.parseFrames([frames.mood1, frames.post1, frames.post2, frames.mood2, frames.post3])
    expect(kinds(events)).toEqual(['commit', 'skip x2', 'commit', 'skip'])
    expect(source.stats.chainBreaks).toBe(0)
  })

  it('a missed foreign commit breaks the chain at the next commit of ours: that repo is queued for a resync', async () => {
    const source = sourceFor(() => author.keypair.did())
    const events = await source.parseFrames([frames.mood1, frames.post1, frames.mood2])
    expect(kinds(events)).toEqual(['commit', 'skip', 'commit', 'resync'])
    expect(events[3]).toMatchObject({ kind: 'resync', did: DID, cursor: 4, reason: expect.stringMatching(/chain break.*prevData/) })
    expect(source.stats.chainBreaks).toBe(1)
  })

  it('a missed commit is seen on a foreign commit of a followed repo too', async () => {
    const source = sourceFor(() => author.keypair.did())
    const events = await source.parseFrames([frames.mood1, frames.post2])
    expect(kinds(events)).toEqual(['commit', 'resync'])
    expect(events[1]).toMatchObject({ did: DID, cursor: 3 })
  })

  it('an older commit again (a replay) is not a break', async () => {
    const source = sourceFor(() => author.keypair.did())
    const events = await source.parseFrames([frames.mood1, frames.post1, frames.post2, frames.mood1, frames.post1, frames.mood2])
    expect(events.filter((e) => e.kind === 'resync')).toEqual([])
  })
})
