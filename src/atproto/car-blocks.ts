import { createHash } from 'node:crypto'
import { decode } from '@atproto/lex-cbor'
import type { Cid } from '@atproto/lex-data'
import { def } from '@atproto/repo'
import { MoodsyncError } from '../errors.ts'

/** A block whose bytes do not hash to its CID: the CAR is not what was signed. */
export class BlockMismatchError extends MoodsyncError {
  override name = 'BlockMismatchError'
}

/** A CAR that cannot be parsed (not a block mismatch: the bytes are not a CAR at all). */
export class CarFormatError extends MoodsyncError {
  override name = 'CarFormatError'
}

const SHA256 = 0x12

/**
 * The blocks of a CAR, indexed as its bytes arrive: each block is found by its CID and hashed
 * only when it is asked for, so a read that touches 20 blocks of a 100,000-record repo hashes
 * 20. The bytes stay in the chunks they came in (a block cut by a chunk's end is copied with
 * the next chunk), and the index holds three numbers a block: memory is about the CAR's size.
 *
 * Hand-written rather than `@atproto/repo`'s `readCar`, which builds a CID object and its
 * base32 string for every block and yields to the event loop every 25 blocks (measured in
 * docs/benchmarks/backfill.md).
 */
export class CarBlocks {
  readonly root: Cid
  /** Bytes read, the CAR's size. */
  readonly bytes: number
  readonly #chunks: Uint8Array[]
  readonly #index: Map<string, number>
  readonly #where: Uint32Array<ArrayBuffer>

  private constructor(root: Cid, bytes: number, chunks: Uint8Array[], index: Map<string, number>, where: Uint32Array<ArrayBuffer>) {
    this.root = root
    this.bytes = bytes
    this.#chunks = chunks
    this.#index = index
    this.#where = where
  }

  get size(): number {
    return this.#index.size
  }

  /** Reads a whole CAR (one root) from its chunks; a malformed one throws CarFormatError. */
  static async read(body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<CarBlocks> {
    const chunks: Uint8Array[] = []
    const index = new Map<string, number>()
    let where = new Uint32Array(3 * 1024)
    let root: Cid | undefined
    // Bytes not parsed yet, and how many the next block needs: they are joined only once that
    // many have come, so a block spanning many chunks is copied once, not once a chunk.
    let pending: Uint8Array[] = []
    let pendingBytes = 0
    let need = 1
    let total = 0
    for await (const chunk of body) {
      total += chunk.byteLength
      pending.push(chunk)
      pendingBytes += chunk.byteLength
      if (pendingBytes < need) continue
      const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes)
      const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      let at = 0
      let indexed = false
      for (;;) {
        const length = varint(data, at)
        if (length === undefined) {
          need = data.byteLength - at + 1
          break
        }
        const start = length.end
        const end = start + length.value
        if (end > data.byteLength) {
          need = end - at
          break
        }
        if (root === undefined) {
          root = header(data.subarray(start, end))
        } else {
          const cidEnd = cidLength(data, start, end)
          const n = index.size
          if (3 * n + 3 > where.length) where = grow(where)
          where[3 * n] = chunks.length
          where[3 * n + 1] = cidEnd
          where[3 * n + 2] = end
          // The CID's bytes as a one-byte string: a cheap, exact key.
          index.set(view.toString('latin1', start, cidEnd), n)
          indexed = true
        }
        at = end
      }
      // Kept only if a block lives in it.
      if (indexed) chunks.push(data)
      const rest = data.subarray(at)
      pending = rest.byteLength > 0 ? [rest] : []
      pendingBytes = rest.byteLength
    }
    if (root === undefined) throw new CarFormatError('no CAR header')
    if (pendingBytes > 0) throw new CarFormatError(`the CAR ends inside a block (${pendingBytes} bytes left)`)
    return new CarBlocks(root, total, chunks, index, where)
  }

  /** The block's bytes, once they are checked to hash to `cid`; undefined if the CAR lacks it. */
  get(cid: Cid): Uint8Array | undefined {
    const n = this.#index.get(Buffer.from(cid.bytes.buffer, cid.bytes.byteOffset, cid.bytes.byteLength).toString('latin1'))
    if (n === undefined) return undefined
    const bytes = this.#chunks[this.#where[3 * n]!]!.subarray(this.#where[3 * n + 1], this.#where[3 * n + 2])
    if (cid.multihash.code !== SHA256) throw new CarFormatError(`block ${cid.toString()}: unsupported hash 0x${cid.multihash.code.toString(16)}`)
    const digest = createHash('sha256').update(bytes).digest()
    if (!digest.equals(cid.multihash.digest)) throw new BlockMismatchError(`block ${cid.toString()} does not match its CID`)
    return bytes
  }
}

function header(bytes: Uint8Array): Cid {
  let parsed
  try {
    parsed = def.carHeader.schema.safeParse(decode(bytes))
  } catch (err) {
    throw new CarFormatError(`unreadable CAR header: ${(err as Error).message}`, { cause: err })
  }
  if (!parsed.success) throw new CarFormatError('not a CAR header')
  if (parsed.data.roots.length !== 1) throw new CarFormatError(`expected one root, got ${parsed.data.roots.length}`)
  return parsed.data.roots[0]!
}

/** Where a block's CID (v1: version, codec, hash code, digest length, digest) ends. */
function cidLength(data: Uint8Array, start: number, end: number): number {
  const version = varint(data, start)
  if (version?.value !== 1) throw new CarFormatError(`block at byte ${start}: not a CIDv1`)
  const codec = varint(data, version.end)
  const hash = codec && varint(data, codec.end)
  const size = hash && varint(data, hash.end)
  if (!size || size.end + size.value > end) throw new CarFormatError(`block at byte ${start}: truncated CID`)
  return size.end + size.value
}

/** An unsigned LEB128 varint at `at`; undefined if the data ends first. Throws `CarFormatError` past 35 bits. */
export function varint(data: Uint8Array, at: number): { value: number; end: number } | undefined {
  let value = 0
  for (let shift = 0, i = at; i < data.byteLength; shift += 7, i++) {
    const byte = data[i]!
    if (shift > 28) throw new CarFormatError(`varint too long at byte ${at}`)
    value += (byte & 0x7f) * 2 ** shift
    if (byte < 0x80) return { value, end: i + 1 }
  }
  return undefined
}

function grow(where: Uint32Array<ArrayBuffer>): Uint32Array<ArrayBuffer> {
  const bigger = new Uint32Array(where.length * 2)
  bigger.set(where)
  return bigger
}
