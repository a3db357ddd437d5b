import { createPublicKey, verify, type KeyObject } from 'node:crypto'
import { extractMultikey, extractPrefixedBytes, hasPrefix, P256_DID_PREFIX, SECP256K1_DID_PREFIX } from '@atproto/crypto'
import { encode } from '@atproto/lex-cbor'
import type { Commit } from '@atproto/repo'

/**
 * ATProto signature checks (ES256K and ES256, compact 64-byte signatures, low-S only) by
 * OpenSSL through `node:crypto`: the pure-JS curves of `@atproto/crypto` took 2.5 ms a commit,
 * this about 0.5 ms (secp256k1) and 0.1 ms (P-256), and a relay's kept commits and a backfill's
 * repos make it the largest cost of both. Accepts and refuses exactly what `@atproto/crypto`'s
 * `verifySignature` does (test/unit/signature.test.ts compares them); OpenSSL alone would take
 * a high-S signature.
 */

// A signature whose s is above half the curve's order is the malleable twin of a valid one.
const HALF_ORDER: Record<string, bigint> = {
  ES256K: 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n >> 1n,
  ES256: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n >> 1n,
}
// DER of the SPKI AlgorithmIdentifier (id-ecPublicKey and the curve's OID) for each key type.
const CURVES = [
  { alg: 'ES256K', prefix: SECP256K1_DID_PREFIX, algorithm: Buffer.from('301006072a8648ce3d020106052b8104000a', 'hex') },
  { alg: 'ES256', prefix: P256_DID_PREFIX, algorithm: Buffer.from('301306072a8648ce3d020106082a8648ce3d030107', 'hex') },
]

interface Key {
  alg: string
  key: KeyObject
}
// Thousands of commits come signed by few keys: each did:key is parsed once.
const keys = new Map<string, Key>()
const MAX_KEYS = 50_000

/** Whether `sig` signs sha256(`data`) under the did:key. False for a bad signature; throws for a key it cannot read. */
export function verifySignature(didKey: string, data: Uint8Array, sig: Uint8Array): boolean {
  const { alg, key } = keyFor(didKey)
  if (sig.byteLength !== 64) return false
  const s = BigInt(`0x${Buffer.from(sig.buffer, sig.byteOffset + 32, 32).toString('hex')}`)
  if (s > HALF_ORDER[alg]!) return false
  return verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig)
}

/** Whether `commit.sig` is the DID key's signature of the commit's other fields (`@atproto/repo`'s `verifyCommitSig`). */
export function verifyCommitSignature(commit: Commit, didKey: string): boolean {
  const { sig, ...unsigned } = commit
  return verifySignature(didKey, encode(unsigned), sig)
}

function keyFor(didKey: string): Key {
  let found = keys.get(didKey)
  if (!found) {
    const bytes = extractPrefixedBytes(extractMultikey(didKey))
    const curve = CURVES.find((c) => hasPrefix(bytes, c.prefix))
    if (!curve) throw new Error('unsupported key type')
    // The compressed point as it is, in an SPKI that OpenSSL decompresses (parseDidKey would
    // decompress it in pure JS first).
    const point = bytes.subarray(curve.prefix.byteLength)
    const bits = Buffer.concat([Buffer.from([0x03, point.byteLength + 1, 0x00]), point])
    const spki = Buffer.concat([Buffer.from([0x30, curve.algorithm.byteLength + bits.byteLength]), curve.algorithm, bits])
    found = { alg: curve.alg, key: createPublicKey({ key: spki, format: 'der', type: 'spki' }) }
    if (keys.size >= MAX_KEYS) keys.delete(keys.keys().next().value!)
    keys.set(didKey, found)
  }
  return found
}
