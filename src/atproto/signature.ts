import { createPublicKey, verify, type KeyObject } from 'node:crypto'
import { parseDidKey } from '@atproto/crypto'

/**
 * ATProto signature checks (ES256K and ES256, compact 64-byte signatures, low-S only) with
 * OpenSSL through `node:crypto`: about 10x faster than the pure-JS curves of
 * `@atproto/crypto`, which a relay's rate of kept commits makes the firehose's largest cost.
 * Accepts and refuses exactly what `@atproto/crypto`'s `verifySignature` does for these keys
 * (test/unit/signature.test.ts compares them).
 */

interface Curve {
  /** The JWK name of the curve. */
  crv: string
  /** Half the group order, big-endian: a larger `s` is the malleable twin of a valid one. */
  halfOrder: Buffer
}

const CURVES: Record<string, Curve> = {
  ES256K: { crv: 'secp256k1', halfOrder: Buffer.from('7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0', 'hex') },
  ES256: { crv: 'P-256', halfOrder: Buffer.from('7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8', 'hex') },
}

interface ParsedKey {
  key: KeyObject
  curve: Curve
}

/** Parsed did:keys; a network's worth of signing keys is a few MB, so the cache is bounded. */
const keys = new Map<string, ParsedKey>()
const MAX_KEYS = 50_000

function keyFor(didKey: string): ParsedKey {
  let parsed = keys.get(didKey)
  if (parsed) return parsed
  const { jwtAlg, keyBytes } = parseDidKey(didKey)
  const curve = CURVES[jwtAlg]
  if (!curve) throw new Error(`unsupported key type ${jwtAlg}`)
  // parseDidKey hands back the uncompressed point: 0x04 || x || y.
  if (keyBytes.length !== 65 || keyBytes[0] !== 4) throw new Error(`unexpected ${jwtAlg} key encoding`)
  const coordinate = (from: number) => Buffer.from(keyBytes.subarray(from, from + 32)).toString('base64url')
  const key = createPublicKey({ key: { kty: 'EC', crv: curve.crv, x: coordinate(1), y: coordinate(33) }, format: 'jwk' })
  parsed = { key, curve }
  if (keys.size >= MAX_KEYS) keys.delete(keys.keys().next().value!)
  keys.set(didKey, parsed)
  return parsed
}

/** Whether `sig` (r || s, 64 bytes, low-S) signs sha256(`data`) under the did:key. Never throws for a bad signature; does for a key it cannot read. */
export function verifySignature(didKey: string, data: Uint8Array, sig: Uint8Array): boolean {
  const { key, curve } = keyFor(didKey)
  if (sig.length !== 64) return false
  const s = Buffer.from(sig.buffer, sig.byteOffset + 32, 32)
  if (s.compare(curve.halfOrder) > 0) return false
  return verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig)
}
