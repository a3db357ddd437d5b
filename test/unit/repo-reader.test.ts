import type { IdResolver } from '@atproto/identity'
import { TID } from '@atproto/common-web'
import { P256Keypair, Secp256k1Keypair, type Keypair } from '@atproto/crypto'
import { cidForLex, encode } from '@atproto/lex-cbor'
import type { Cid } from '@atproto/lex-data'
import { BlockMap, blocksToCarFile, MemoryBlockstore, Repo, WriteOpAction, type Commit, type RecordCreateOp } from '@atproto/repo'
import { describe, expect, it } from 'vitest'
import { CarBlocks } from '../../src/atproto/car-blocks.ts'
import { leavesWithPrefix } from '../../src/atproto/mst-prefix.ts'
import { RepoReader, RepoUnavailableError, type RepoFailureKind } from '../../src/atproto/repo-reader.ts'

// Repos built in memory by @atproto/repo and served by a fake PDS: what RepoReader verifies
// (block hashes, the commit's DID and signature, the walk from the signed root), with no rig.
const MOOD = 'computer.aesthetic.mood'
const DID = 'did:plc:abcdefghijklmnopqrstuvwx'
const PDS = 'https://pds.test'
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n

interface Fixture {
  car: Uint8Array
  commit: Commit
  blocks: BlockMap
  key: Keypair
}

async function makeRepo(collections: Record<string, number>, key: Keypair): Promise<Fixture> {
  const storage = new MemoryBlockstore()
  const writes = Object.entries(collections).flatMap(([collection, n]) =>
    Array.from({ length: n }, (_, i) => ({ action: WriteOpAction.Create as const, collection: collection as RecordCreateOp['collection'], rkey: TID.nextStr(), record: { $type: collection, text: `${collection} ${i}`, createdAt: '2026-12-01T00:00:00.000Z' } })),
  )
  const repo = await Repo.create(storage, DID, key, writes)
  return { car: await blocksToCarFile(repo.cid, storage.blocks), commit: repo.commit, blocks: storage.blocks, key }
}

/** The fixture's CAR with its commit replaced by `commit` (the new root). */
async function withCommit(f: Fixture, commit: Record<string, unknown>): Promise<Uint8Array> {
  const cid = await cidForLex(commit as never)
  const blocks = new BlockMap().addMap(f.blocks).set(cid, encode(commit as never))
  return blocksToCarFile(cid, blocks)
}

const signed = async (key: Keypair, unsigned: Omit<Commit, 'sig'>) => ({ ...unsigned, sig: await key.sign(encode(unsigned as never)) })

/** A RepoReader whose PDS serves `car` in chunks of `chunk` bytes, and whose DID documents name the keys given in turn. */
function readerFor(car: Uint8Array, keys: string[], chunk = 997) {
  const resolutions: boolean[] = []
  const idResolver = {
    did: {
      resolveAtprotoData: async (did: string, force = false) => {
        resolutions.push(force)
        return { did, pds: PDS, signingKey: keys[Math.min(resolutions.length - 1, keys.length - 1)]!, handle: 'alice.test' }
      },
    },
  } as unknown as IdResolver
  const fetch: typeof globalThis.fetch = async () => {
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < car.byteLength; i += chunk) c.enqueue(car.slice(i, i + chunk))
        c.close()
      },
    })
    return new Response(body, { status: 200, headers: { 'content-type': 'application/vnd.ipld.car' } })
  }
  return { reader: new RepoReader({ idResolver, collection: MOOD, fetch, attempts: 1 }), resolutions }
}

async function failure(read: Promise<unknown>): Promise<{ kind: RepoFailureKind; message: string }> {
  const err = await read.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(RepoUnavailableError)
  return { kind: (err as RepoUnavailableError).kind, message: (err as Error).message }
}

describe('RepoReader.read: verified reads of our collection only', () => {
  it('returns exactly the moods, in key order, and nothing of the collections around them', async () => {
    const key = await Secp256k1Keypair.create()
    // '.' and '-' sort before '/', 'z' after: keys right beside the prefix, outside it.
    const f = await makeRepo({ [MOOD]: 40, 'computer.aesthetic.mood.draft': 30, 'computer.aesthetic.mood-old': 30, 'computer.aesthetic.moodz': 30, 'app.bsky.feed.like': 300, 'zz.other': 30 }, key)
    for (const chunk of [7, 997, 1 << 20]) {
      const snapshot = await readerFor(f.car, [key.did()], chunk).reader.read(DID)
      expect(snapshot).toMatchObject({ did: DID, rev: f.commit.rev, pds: PDS, handle: 'alice.test', via: 'car', bytes: f.car.byteLength })
      expect(snapshot.records).toHaveLength(40)
      expect(snapshot.records.every((r) => (r.value as { $type: string }).$type === MOOD)).toBe(true)
      const rkeys = snapshot.records.map((r) => r.rkey)
      expect(rkeys).toEqual([...rkeys].sort())
    }
  })

  it('walks only the nodes whose range meets the prefix', async () => {
    const key = await Secp256k1Keypair.create()
    const f = await makeRepo({ [MOOD]: 10, 'app.bsky.feed.like': 3000 }, key)
    const car = await CarBlocks.read([f.car])
    let read = 0
    const leaves = leavesWithPrefix({ get: (cid: Cid) => (read++, car.get(cid)) }, f.commit.data, `${MOOD}/`)
    expect(leaves.map((l) => l.key.split('/')[0])).toEqual(Array(10).fill(MOOD))
    // The tree has about a thousand nodes; the path to ten keys at its right end is a few dozen.
    expect(car.size).toBeGreaterThan(3000)
    expect(read).toBeLessThan(60)
  })

  it('a block longer than many chunks is read whole (joined once, not once a chunk)', async () => {
    const blocks = new BlockMap()
    const cid = await blocks.add({ text: 'a quiet afternoon '.repeat(20_000) })
    const car = await blocksToCarFile(cid, blocks)
    const chunks = Array.from({ length: Math.ceil(car.byteLength / 512) }, (_, i) => car.subarray(i * 512, (i + 1) * 512))
    const read = await CarBlocks.read(chunks)
    expect(read.root.toString()).toBe(cid.toString())
    expect(Buffer.from(read.get(cid)!).equals(Buffer.from(blocks.get(cid)!))).toBe(true)
  })

  it('a P-256 key works as well as secp256k1', async () => {
    const key = await P256Keypair.create()
    const f = await makeRepo({ [MOOD]: 5 }, key)
    expect((await readerFor(f.car, [key.did()]).reader.read(DID)).records).toHaveLength(5)
  })

  it('refuses a tampered mood block; a tampered block the walk never uses changes nothing', async () => {
    const key = await Secp256k1Keypair.create()
    const f = await makeRepo({ [MOOD]: 3, 'app.bsky.feed.like': 3 }, key)
    const flip = (text: string) => {
      const car = f.car.slice()
      const at = Buffer.from(car).indexOf(Buffer.from(text))
      expect(at).toBeGreaterThan(0)
      car[at] = car[at]! ^ 0x20
      return car
    }
    const mood = await failure(readerFor(flip(`${MOOD} 1`), [key.did()]).reader.read(DID))
    expect(mood).toMatchObject({ kind: 'verification', message: expect.stringMatching(/does not match its CID/) })
    expect((await readerFor(flip('app.bsky.feed.like 1'), [key.did()]).reader.read(DID)).records).toHaveLength(3)
  })

  it('refuses a signature by another key, and reads it after the DID document is refreshed to the right one', async () => {
    const key = await Secp256k1Keypair.create()
    const other = await Secp256k1Keypair.create()
    const f = await makeRepo({ [MOOD]: 3 }, key)
    const wrong = readerFor(f.car, [other.did()])
    expect(await failure(wrong.reader.read(DID))).toMatchObject({ kind: 'verification', message: expect.stringMatching(/invalid signature/) })
    expect(wrong.resolutions).toEqual([false, true])
    const rotated = readerFor(f.car, [other.did(), key.did()])
    expect((await rotated.reader.read(DID)).records).toHaveLength(3)
    expect(rotated.resolutions).toEqual([false, true])
  })

  it('refuses a high-S signature (valid for the curve, malleable) and a signature not 64 bytes', async () => {
    const key = await Secp256k1Keypair.create()
    const f = await makeRepo({ [MOOD]: 3 }, key)
    const { sig, ...unsigned } = f.commit
    const s = BigInt(`0x${Buffer.from(sig.subarray(32)).toString('hex')}`)
    const highS = new Uint8Array([...sig.subarray(0, 32), ...Buffer.from((SECP256K1_N - s).toString(16).padStart(64, '0'), 'hex')])
    expect(await failure(readerFor(await withCommit(f, { ...unsigned, sig: highS }), [key.did()]).reader.read(DID))).toMatchObject({ kind: 'verification' })
    expect(await failure(readerFor(await withCommit(f, { ...unsigned, sig: sig.subarray(0, 63) }), [key.did()]).reader.read(DID))).toMatchObject({ kind: 'verification' })
    // The same commit with its own low-S signature still reads: the CAR rebuilt is not the cause.
    expect((await readerFor(await withCommit(f, { ...unsigned, sig }), [key.did()]).reader.read(DID)).records).toHaveLength(3)
  })

  it('refuses a commit signed for another DID', async () => {
    const key = await Secp256k1Keypair.create()
    const f = await makeRepo({ [MOOD]: 3 }, key)
    const { sig: _sig, ...unsigned } = f.commit
    const car = await withCommit(f, await signed(key, { ...unsigned, did: 'did:plc:zzzzzzzzzzzzzzzzzzzzzzzz' }))
    expect(await failure(readerFor(car, [key.did()]).reader.read(DID))).toMatchObject({ kind: 'verification', message: expect.stringMatching(/signed for did:plc:z/) })
  })

  it('a CAR cut short, or not a CAR, is invalid', async () => {
    const key = await Secp256k1Keypair.create()
    const f = await makeRepo({ [MOOD]: 3 }, key)
    expect(await failure(readerFor(f.car.subarray(0, f.car.byteLength - 10), [key.did()]).reader.read(DID))).toMatchObject({ kind: 'invalid' })
    expect(await failure(readerFor(new TextEncoder().encode('<html>not a repo</html>'), [key.did()]).reader.read(DID))).toMatchObject({ kind: 'invalid' })
  })
})
