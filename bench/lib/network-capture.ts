/**
 * The bench library, part 4: frames recorded off Bluesky's relay (rig/relay.ts) in front of a
 * local PDS, written to look like the network's firehose: sync 1.1 commits (with `prevData`)
 * to many collections from many accounts, some with several ops, some deletes, and almost no
 * moods. Recorded once per set of knobs and kept under .cache/bench/ (the frames and, beside
 * them, each DID's signing key and the moods written), so replays need neither the PDS nor
 * PLC: a replay resolves keys from the saved map, as a warm key cache would.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { clientRef } from '../../rig/client-ref.ts'
import type { TestAccount } from '../../rig/network.ts'
import type { RelayServer } from '../../rig/relay.ts'
import { createIdResolver } from '../../src/atproto/identity.ts'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { decodeFrames, encodeFrames, mulberry32 } from './fixtures.ts'
import { fmt, int, isMain, progress } from './report.ts'
import { firehoseTap } from './servers.ts'

export interface CaptureKnobs {
  accounts: number
  commits: number
  /** One commit in this many is a mood. */
  moodEvery: number
  /** Give up writing after this long (a loaded machine writes slowly). */
  genSeconds: number
}

export interface Capture {
  /** Empty when loaded without them (`frames: false`). */
  frames: Buffer[]
  frameCount: number
  /** `at://did/collection/rkey cid` of every mood written. */
  moods: string[]
  /** Each DID's did:key, as PLC had it when the frames were recorded. */
  keys: Record<string, string>
  commits: number
  lastSeq: number
  file: string
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

/** The capture for these knobs: from .cache/bench/ when recorded before, else recorded now. */
export async function networkCapture(k: CaptureKnobs, opts: { fresh?: boolean; frames?: boolean } = {}): Promise<Capture> {
  const file = join(ROOT, '.cache', 'bench', `firehose-${k.accounts}a-${k.commits}c-1in${k.moodEvery}.frames`)
  if (!opts.fresh && existsSync(file) && existsSync(`${file}.json`)) {
    const capture = await loadCapture(file, opts.frames)
    progress(`capture: ${capture.frameCount} frames from ${file} (recorded before; --fresh records again)`)
    return capture
  }
  // In a child process: the PDS, PLC and their modules stay out of the bench's memory and CPU.
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), JSON.stringify({ knobs: k, file })], { stdio: ['ignore', 'inherit', 'inherit'] })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  if (code !== 0) throw new Error(`recording the capture failed (exit ${code})`)
  return loadCapture(file, opts.frames)
}

async function recordTo(k: CaptureKnobs, file: string): Promise<void> {
  const capture = await record(k, file)
  await mkdir(dirname(file), { recursive: true })
  const { frames, ...meta } = capture
  await writeFile(`${file}.tmp`, encodeFrames(frames))
  await writeFile(`${file}.json`, JSON.stringify(meta))
  await rename(`${file}.tmp`, file)
}

/** `frames: false`: the metadata only, for a bench whose frame server reads the file itself. */
export async function loadCapture(file: string, frames = true): Promise<Capture> {
  const meta = JSON.parse(await readFile(`${file}.json`, 'utf8')) as Omit<Capture, 'frames' | 'frameCount'> & { frameCount?: number }
  const list = frames ? decodeFrames(await readFile(file)) : []
  return { ...meta, frames: list, frameCount: meta.frameCount ?? list.length, file }
}

/** An IdResolver for the capture's DIDs, from its saved keys (what @atproto/sync and FirehoseSource call). */
export function captureKeys(capture: Capture) {
  const resolveAtprotoKey = async (did: string) => {
    const key = capture.keys[did]
    if (!key) throw new Error(`no key for ${did} in the capture`)
    return key
  }
  return { did: { resolveAtprotoKey, resolve: async () => null } } as never
}

/**
 * Passes of a capture seen so far in a stream of event arrays: the events of its last frame
 * (one or more, all at its seq) end one. A socket read can hold several passes of a short
 * capture, so each is counted.
 */
export function passCounter(lastSeq: number) {
  let previous: number | undefined
  const counter = {
    done: 0,
    count(events: readonly { cursor?: number }[]): number {
      for (const event of events) {
        if (event.cursor === lastSeq && previous !== lastSeq) counter.done++
        if (event.cursor !== undefined) previous = event.cursor
      }
      return counter.done
    },
  }
  return counter
}

/** Collections and their share of non-mood commits: roughly the network's mix. */
const MIX: [collection: string, weight: number][] = [
  ['app.bsky.feed.like', 45],
  ['app.bsky.feed.post', 22],
  ['app.bsky.graph.follow', 12],
  ['app.bsky.feed.repost', 11],
  ['app.bsky.graph.block', 3],
  ['app.bsky.graph.listitem', 3],
  ['app.bsky.feed.threadgate', 2],
  ['chat.bsky.actor.declaration', 1],
  ['sh.tangled.repo.issue', 1],
]
const WEIGHTS = MIX.reduce((n, [, w]) => n + w, 0)

async function record(k: CaptureKnobs, file: string): Promise<Capture> {
  const { TestNetwork } = await import('../../rig/network.ts')
  const { RelayServer } = await import('../../rig/relay.ts')
  const network = await TestNetwork.start()
  let relay: RelayServer | undefined
  try {
    const accounts: TestAccount[] = []
    for (let i = 0; i < k.accounts; i++) accounts.push(await network.createAccount(`net${i}`))
    relay = await RelayServer.start({ pdsUrl: network.pdsUrl, plcUrl: network.plcUrl })
    const from = await relayIsLive(relay, accounts[0]!)
    const started = performance.now()
    const written = await generate(accounts, k)
    const genMs = performance.now() - started
    const frames: Buffer[] = []
    let commits = 0
    let lastSeq = from
    let tap: ReturnType<typeof firehoseTap> | undefined
    const relayed = new Set<string>()
    // The relay verifies and stores each commit: on a busy machine it can trail the writers by
    // minutes. It has been seen to drop one commit in 10,000: 20 s of silence with 99% of them in is the end.
    let heard = Date.now()
    const quiet = () => Date.now() - heard > 20_000
    await within(() => `the capture (${commits} of ${written.commits} commits, ${frames.length} frames, nothing for 20 s)`, () => quiet() && commits < written.commits * 0.99, (done) => {
      const ended = setInterval(() => quiet() && (clearInterval(ended), done()), 1000)
      tap = firehoseTap(`${relay!.firehoseUrl}?cursor=${from}`, (frame, data) => {
        heard = Date.now()
        if (frames.length % 2000 === 1999) progress(`  captured ${frames.length + 1} frames`)
        frames.push(data)
        lastSeq = Math.max(lastSeq, frame.seq ?? 0)
        if (frame.t !== '#commit') return
        for (const op of frame.ops ?? []) if (op.path?.startsWith(`${MOOD_NSID}/`)) relayed.add(`at://${frame.repo}/${op.path}`)
        if (++commits >= written.commits) (clearInterval(ended), done())
      })
    })
    tap?.close()
    // What the relay served is the stream: a mood it dropped is not one a replay can keep.
    const moods = written.moods.filter((m) => relayed.has(m.split(' ')[0]!))
    const resolver = createIdResolver(network.plcUrl)
    const keys: Record<string, string> = {}
    for (const account of accounts) keys[account.did] = await resolver.did.resolveAtprotoKey(account.did)
    progress(`capture: ${written.commits} commits (${written.moods.length} moods, ${written.ops} ops) written in ${fmt(genMs / 1000)} s (${int(written.commits / (genMs / 1000))}/s); ${commits} commits (${moods.length} moods) in ${frames.length} relay frames, ${fmt(frames.reduce((n, f) => n + f.length, 0) / 2 ** 20, 2)} MiB`)
    return { frames, frameCount: frames.length, moods, keys, commits, lastSeq, file }
  } finally {
    await relay?.stop()
    await network.stop()
  }
}

/** Writes a probe post and waits for the relay to serve it: from then on it relays everything. Its seq. */
async function relayIsLive(relay: RelayServer, account: TestAccount): Promise<number> {
  let seq = 0
  let tap: ReturnType<typeof firehoseTap> | undefined
  const deadline = Date.now() + 60_000
  await within(() => 'the relay to go live', () => Date.now() > deadline, (done) => {
    tap = firehoseTap(relay.firehoseUrl, (frame) => {
      if (frame.t === '#commit') {
        seq = frame.seq ?? 0
        done()
      }
    })
    const post = { $type: 'app.bsky.feed.post', text: 'probe', createdAt: new Date().toISOString() }
    void tap.opened.then(() => account.agent.com.atproto.repo.createRecord({ repo: account.did, collection: post.$type, record: post }))
  })
  tap?.close()
  return seq
}

/** applyWrites commits, one writer per account, all at once, until `commits` or `genSeconds`. */
async function generate(accounts: TestAccount[], k: CaptureKnobs): Promise<{ commits: number; ops: number; moods: string[] }> {
  const random = mulberry32(0x5eed)
  const moods: string[] = []
  const own = new Map<string, { collection: string; rkey: string }[]>()
  const deadline = performance.now() + k.genSeconds * 1000
  let next = 0
  let commits = 0
  let ops = 0
  const pick = () => {
    let r = random() * WEIGHTS
    for (const [collection, weight] of MIX) if ((r -= weight) < 0) return collection
    return MIX[0]![0]
  }
  // The platform's users are a few of the network's accounts: only they write moods (as often
  // as 1 in moodEvery of all commits), so the repos whose chain is followed are few too.
  const moodWriters = Math.max(1, Math.round(accounts.length / 8))
  const writer = async (account: TestAccount, index: number) => {
    const mine = own.set(account.did, []).get(account.did)!
    const moodChance = index < moodWriters ? accounts.length / (moodWriters * k.moodEvery) : 0
    for (let i = next++; i < k.commits && performance.now() < deadline; i = next++) {
      const now = new Date().toISOString()
      const writes: Record<string, unknown>[] = []
      if (random() < moodChance) {
        writes.push({ $type: 'com.atproto.repo.applyWrites#create', collection: MOOD_NSID, value: { $type: MOOD_NSID, ref: clientRef(), mood: `bench mood ${i}`, when: now } })
      } else if (mine.length > 10 && random() < 0.05) {
        const [gone] = mine.splice(Math.floor(random() * mine.length), 1)
        writes.push({ $type: 'com.atproto.repo.applyWrites#delete', ...gone })
      } else {
        // About one commit in twelve carries several records, as a thread or a batch of likes does.
        const count = random() < 0.08 ? 2 + Math.floor(random() * 3) : 1
        for (let j = 0; j < count; j++) {
          const collection = pick()
          writes.push({ $type: 'com.atproto.repo.applyWrites#create', collection, value: recordOf(collection, account, i, now) })
        }
      }
      // The PDS knows app.bsky's lexicons, not every collection's: the records are shaped like the network's, not validated.
      const res = await account.agent.com.atproto.repo.applyWrites({ repo: account.did, validate: false, writes: writes as never })
      for (const [j, result] of (res.data.results ?? []).entries()) {
        const { uri, cid } = result as { uri?: string; cid?: string }
        if (!uri) continue
        const [collection, rkey] = uri.split('/').slice(-2) as [string, string]
        if (collection === MOOD_NSID) moods.push(`${uri} ${cid}`)
        else if (writes[j]!.$type === 'com.atproto.repo.applyWrites#create') mine.push({ collection, rkey })
      }
      ops += writes.length
      if (++commits % 1000 === 0) progress(`  ${commits} commits`)
    }
  }
  await Promise.all(accounts.map((account, index) => writer(account, index)))
  return { commits, ops, moods }
}

function recordOf(collection: string, account: TestAccount, i: number, now: string): Record<string, unknown> {
  const subject = { uri: `at://${account.did}/app.bsky.feed.post/3l3qo2vuowo2b`, cid: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm' }
  switch (collection) {
    case 'app.bsky.feed.post':
      return { $type: collection, text: `post ${i}: ${'lorem ipsum dolor sit amet '.repeat(1 + (i % 8))}`.trim(), langs: ['en'], createdAt: now }
    case 'app.bsky.feed.like':
    case 'app.bsky.feed.repost':
      return { $type: collection, subject, createdAt: now }
    case 'app.bsky.graph.follow':
    case 'app.bsky.graph.block':
      return { $type: collection, subject: account.did, createdAt: now }
    case 'app.bsky.graph.listitem':
      return { $type: collection, subject: account.did, list: `at://${account.did}/app.bsky.graph.list/3l3qo2vuowo2b`, createdAt: now }
    default:
      return { $type: collection, title: `item ${i}`, createdAt: now }
  }
}

/** Settles when `start` calls done; fails once `expired` says so (checked every second). */
function within(what: () => string, expired: () => boolean, start: (done: () => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => expired() && (clearInterval(timer), reject(new Error(`${what()} timed out`))), 1000)
    start(() => (clearInterval(timer), resolve()))
  })
}

if (isMain(import.meta)) {
  const { knobs, file } = JSON.parse(process.argv[2]!) as { knobs: CaptureKnobs; file: string }
  await recordTo(knobs, file)
  // The PDS's and PLC's handles would keep the process alive a while: it is done.
  process.exit(0)
}
