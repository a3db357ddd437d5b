import { CarFormatError, varint } from '../atproto/car-blocks.ts'

/**
 * Reads what the firehose's skip decision needs straight from a `#commit` frame's CBOR bytes
 * (seq, repo, time, the chain fields and each op's path), stepping over the blocks and CIDs
 * by their lengths without decoding them. Nearly every frame of the network's firehose is a
 * commit to collections we do not index: decoding it whole cost ~15 µs, scanning it ~1 µs (CPU profiles in docs/benchmarks/firehose-path.md).
 * Anything it is not sure of (another frame type, a shape it does not expect, indefinite
 * lengths, trailing bytes) it declines, and the full decoder takes the frame as before, so
 * what is malformed is still reported the same way.
 */

/** Byte ranges into the frame ([start, end), -1 when absent) and the values read. */
export interface CommitScan {
  seq: number
  /** `hashDid` of the repo's DID, so a look-up can skip decoding it. */
  repoHash: number
  /** Whether an op's path starts with one of the prefixes. */
  ours: boolean
  repo: [number, number]
  rev: [number, number]
  time: [number, number]
  since: [number, number]
  /** The CIDs' bytes, without the tag's leading 0x00. */
  commit: [number, number]
  prevData: [number, number]
  blocks: [number, number]
}

export function emptyScan(): CommitScan {
  return { seq: -1, repoHash: 0, ours: false, repo: [-1, -1], rev: [-1, -1], time: [-1, -1], since: [-1, -1], commit: [-1, -1], prevData: [-1, -1], blocks: [-1, -1] }
}

const KEY = (s: string) => Buffer.from(s, 'latin1')
const K = {
  op: KEY('op'),
  t: KEY('t'),
  commitType: KEY('#commit'),
  seq: KEY('seq'),
  ops: KEY('ops'),
  rev: KEY('rev'),
  repo: KEY('repo'),
  time: KEY('time'),
  path: KEY('path'),
  since: KEY('since'),
  blocks: KEY('blocks'),
  commit: KEY('commit'),
  prevData: KEY('prevData'),
  data: KEY('data'),
}
const Field = { other: 0, seq: 1, ops: 2, repo: 3, rev: 4, time: 5, since: 6, blocks: 7, commit: 8, prevData: 9 } as const
type Field = (typeof Field)[keyof typeof Field]
const FIELD_KEYS: (Buffer | undefined)[] = [undefined, K.seq, K.ops, K.repo, K.rev, K.time, K.since, K.blocks, K.commit, K.prevData]
const MAX_DEPTH = 16
const CID_TAG = 42

export class FrameScanner {
  readonly #prefixes: readonly Buffer[]
  #b: Uint8Array = new Uint8Array(0)
  #p = 0
  #arg = 0
  #key = 0

  constructor(prefixes: readonly string[]) {
    this.#prefixes = prefixes.map((p) => Buffer.from(p, 'utf8'))
  }

  /** Fills `out` from a `#commit` frame; false when the frame is for the full decoder. */
  scanCommit(frame: Uint8Array, out: CommitScan): boolean {
    this.#b = frame
    this.#p = 0
    if (!this.#isCommitHeader()) return false
    out.seq = -1
    out.ours = false
    out.repo[0] = out.rev[0] = out.time[0] = out.since[0] = out.commit[0] = out.prevData[0] = out.blocks[0] = -1
    let sawOps = false
    if (this.#head() !== 5) return false
    for (let entries = this.#arg; entries > 0; entries--) {
      const kl = this.#mapKey()
      if (kl < 0) return false
      let ok: boolean
      switch (this.#field(this.#key, kl)) {
        case Field.seq:
          ok = this.#head() === 0
          out.seq = this.#arg
          break
        case Field.ops:
          ok = sawOps = this.#ops(out)
          break
        case Field.repo:
          ok = this.#text(out.repo)
          out.repoHash = ok ? this.#hash(out.repo[0], out.repo[1]) : 0
          break
        case Field.rev:
          ok = this.#text(out.rev)
          break
        case Field.time:
          ok = this.#text(out.time)
          break
        case Field.since:
          ok = this.#textOrNull(out.since)
          break
        case Field.blocks:
          ok = this.#head() === 2
          out.blocks[0] = this.#p
          out.blocks[1] = this.#p += this.#arg
          ok &&= this.#p <= frame.length
          break
        case Field.commit:
          ok = this.#cid(out.commit)
          break
        case Field.prevData:
          ok = this.#cidOrNull(out.prevData)
          break
        default:
          ok = this.#skip(0)
      }
      if (!ok) return false
    }
    return this.#p === frame.length && out.seq >= 0 && out.repo[0] >= 0 && out.rev[0] >= 0 && sawOps
  }

  /** Which body field a key names: one byte picks the candidate, one comparison confirms it. */
  #field(start: number, length: number): Field {
    const first = this.#b[start]
    let field: Field
    switch (length) {
      case 3:
        field = first === 0x73 ? Field.seq : first === 0x6f ? Field.ops : first === 0x72 ? Field.rev : Field.other
        break
      case 4:
        field = first === 0x72 ? Field.repo : first === 0x74 ? Field.time : Field.other
        break
      case 5:
        field = first === 0x73 ? Field.since : Field.other
        break
      case 6:
        field = first === 0x62 ? Field.blocks : first === 0x63 ? Field.commit : Field.other
        break
      case 8:
        field = first === 0x70 ? Field.prevData : Field.other
        break
      default:
        return Field.other
    }
    return field !== Field.other && this.#is(start, length, FIELD_KEYS[field]!) ? field : Field.other
  }

  /** FNV-1a of the bytes: the repo's DID, compared before it is decoded. */
  #hash(start: number, end: number): number {
    let h = 0x811c9dc5
    for (let i = start; i < end; i++) h = Math.imul(h ^ this.#b[i]!, 0x01000193)
    return h >>> 0
  }

  /**
   * The `data` CID (bytes, as hex) of the commit block `commit` names in a commit's CAR:
   * the MST root a sync 1.1 chain links by. Undefined when the CAR does not hold it plainly.
   */
  commitData(frame: Uint8Array, blocks: readonly [number, number], commit: readonly [number, number]): string | undefined {
    this.#b = frame
    const end = blocks[1]
    const cidLength = commit[1] - commit[0]
    try {
      const header = varint(frame, blocks[0])
      if (!header) return undefined
      // A CAR: its header, then (length, CID, block) entries; the commit block is usually first.
      for (let at = header.end + header.value; at < end; ) {
        const entry = varint(frame, at)
        if (!entry || entry.end + entry.value > end) return undefined
        at = entry.end + entry.value
        if (entry.value > cidLength && this.#equal(entry.end, commit[0], cidLength)) return this.#dataOf(entry.end + cidLength, at, frame)
      }
    } catch (err) {
      if (err instanceof CarFormatError) return undefined
      throw err
    }
    return undefined
  }

  #dataOf(start: number, end: number, frame: Uint8Array): string | undefined {
    this.#p = start
    if (this.#head() !== 5) return undefined
    for (let entries = this.#arg; entries > 0; entries--) {
      const kl = this.#mapKey()
      if (kl < 0) return undefined
      const ks = this.#key
      if (this.#is(ks, kl, K.data)) {
        const range: [number, number] = [-1, -1]
        if (!this.#cid(range) || this.#p > end) return undefined
        return Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).toString('hex', range[0], range[1])
      }
      if (!this.#skip(0) || this.#p > end) return undefined
    }
    return undefined
  }

  #isCommitHeader(): boolean {
    if (this.#head() !== 5) return false
    let op = false
    let commit = false
    for (let entries = this.#arg; entries > 0; entries--) {
      const kl = this.#mapKey()
      if (kl < 0) return false
      const ks = this.#key
      if (this.#is(ks, kl, K.op)) {
        const major = this.#head()
        if (major < 0) return false
        op = major === 0 && this.#arg === 1
      } else if (this.#is(ks, kl, K.t)) {
        if (this.#head() !== 3) return false
        commit = this.#is(this.#p, this.#arg, K.commitType)
        this.#p += this.#arg
      } else if (!this.#skip(0)) return false
    }
    return op && commit && this.#p <= this.#b.length
  }

  #ops(out: CommitScan): boolean {
    if (this.#head() !== 4) return false
    for (let ops = this.#arg; ops > 0; ops--) {
      if (this.#head() !== 5) return false
      for (let entries = this.#arg; entries > 0; entries--) {
        const kl = this.#mapKey()
        if (kl < 0) return false
        const ks = this.#key
        if (this.#is(ks, kl, K.path)) {
          if (this.#head() !== 3) return false
          if (!out.ours && this.#ours(this.#p, this.#arg)) out.ours = true
          this.#p += this.#arg
          if (this.#p > this.#b.length) return false
        } else if (!this.#skip(0)) return false
      }
    }
    return true
  }

  #ours(start: number, length: number): boolean {
    for (const prefix of this.#prefixes) if (length >= prefix.length && this.#startsWith(start, prefix)) return true
    return false
  }

  #text(range: [number, number]): boolean {
    if (this.#head() !== 3) return false
    range[0] = this.#p
    range[1] = this.#p += this.#arg
    return this.#p <= this.#b.length
  }

  #textOrNull(range: [number, number]): boolean {
    if (this.#b[this.#p] === 0xf6) return (this.#p++, true)
    return this.#text(range)
  }

  #cid(range: [number, number]): boolean {
    if (this.#head() !== 6 || this.#arg !== CID_TAG) return false
    if (this.#head() !== 2 || this.#arg < 2 || this.#b[this.#p] !== 0) return false
    range[0] = this.#p + 1
    range[1] = this.#p += this.#arg
    return this.#p <= this.#b.length
  }

  #cidOrNull(range: [number, number]): boolean {
    if (this.#b[this.#p] === 0xf6) return (this.#p++, true)
    return this.#cid(range)
  }

  /** Steps over one item; false on anything not definite-length CBOR or nested too deep. */
  #skip(depth: number): boolean {
    if (depth > MAX_DEPTH) return false
    switch (this.#head()) {
      case -1:
        return false
      case 2:
      case 3:
        this.#p += this.#arg
        return this.#p <= this.#b.length
      case 4:
        for (let n = this.#arg; n > 0; n--) if (!this.#skip(depth + 1)) return false
        return true
      case 5:
        for (let n = this.#arg * 2; n > 0; n--) if (!this.#skip(depth + 1)) return false
        return true
      case 6:
        return this.#skip(depth + 1)
      default:
        return true
    }
  }

  /** Reads a map's key (text): its length, or -1; where it starts goes to #key. */
  #mapKey(): number {
    if (this.#head() !== 3) return -1
    this.#key = this.#p
    this.#p += this.#arg
    return this.#p > this.#b.length ? -1 : this.#arg
  }

  /** Reads an item's head: its major type (-1 when it cannot), its argument into #arg (a float's bytes are its argument). */
  #head(): number {
    const b = this.#b
    let p = this.#p
    if (p >= b.length) return -1
    const initial = b[p++]!
    const info = initial & 31
    let arg: number
    if (info < 24) arg = info
    else if (info === 24) arg = b[p++]!
    else if (info === 25) {
      arg = (b[p]! << 8) | b[p + 1]!
      p += 2
    } else if (info === 26) {
      arg = b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!)
      p += 4
    } else if (info === 27) {
      const high = b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!)
      if (high >= 0x200000) return -1 // beyond a safe integer: not a length or seq of ours
      arg = high * 0x100000000 + b[p + 4]! * 0x1000000 + ((b[p + 5]! << 16) | (b[p + 6]! << 8) | b[p + 7]!)
      p += 8
    } else return -1 // indefinite lengths and reserved values are not DAG-CBOR
    if (p > b.length) return -1
    this.#arg = arg
    this.#p = p
    return initial >> 5
  }

  #is(start: number, length: number, key: Buffer): boolean {
    return length === key.length && this.#startsWith(start, key)
  }

  #startsWith(start: number, bytes: Buffer): boolean {
    const b = this.#b
    if (start + bytes.length > b.length) return false
    for (let i = 0; i < bytes.length; i++) if (b[start + i] !== bytes[i]) return false
    return true
  }

  #equal(a: number, b: number, length: number): boolean {
    const bytes = this.#b
    for (let i = 0; i < length; i++) if (bytes[a + i] !== bytes[b + i]) return false
    return true
  }
}

/** The FNV-1a hash the scan takes of a repo's DID (`CommitScan.repoHash`). */
export function hashDid(did: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < did.length; i++) h = Math.imul(h ^ did.charCodeAt(i), 0x01000193)
  return h >>> 0
}
