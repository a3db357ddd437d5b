import { randomBytes } from 'node:crypto'
import { P256Keypair, Secp256k1Keypair, verifySignature as reference } from '@atproto/crypto'
import { describe, expect, it } from 'vitest'
import { verifySignature } from '../../src/atproto/signature.ts'

const ORDERS = {
  ES256K: BigInt('0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141'),
  ES256: BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551'),
}

/** The same signature with s replaced by n - s: valid ECDSA, refused by ATProto (malleable). */
function highSTwin(sig: Uint8Array, order: bigint): Uint8Array {
  const s = BigInt(`0x${Buffer.from(sig.subarray(32)).toString('hex')}`)
  const twin = Buffer.from((order - s).toString(16).padStart(64, '0'), 'hex')
  return Buffer.concat([sig.subarray(0, 32), twin])
}

describe.each([
  ['ES256K (secp256k1)', 'ES256K', () => Secp256k1Keypair.create()],
  ['ES256 (P-256)', 'ES256', () => P256Keypair.create()],
] as const)('verifySignature, %s', (_name, alg, create) => {
  it('accepts and refuses exactly what @atproto/crypto does', async () => {
    const signer = await create()
    const other = await create()
    for (let i = 0; i < 20; i++) {
      const data = randomBytes(1 + (i * 37) % 300)
      const sig = await signer.sign(data)
      const tampered = Buffer.from(data)
      tampered[0]! ^= 1
      const cases: [string, Uint8Array, Uint8Array][] = [
        [signer.did(), data, sig],
        [other.did(), data, sig],
        [signer.did(), tampered, sig],
        [signer.did(), data, highSTwin(sig, ORDERS[alg])],
        [signer.did(), data, sig.subarray(0, 63)],
      ]
      // The reference throws on a signature of the wrong length: a refusal too.
      for (const [key, bytes, signature] of cases) expect(verifySignature(key, bytes, signature)).toBe(await reference(key, bytes, signature).catch(() => false))
      expect(verifySignature(signer.did(), data, sig)).toBe(true)
    }
  })

  it('refuses another key, other data, and the high-S twin of a valid signature', async () => {
    const signer = await create()
    const data = randomBytes(64)
    const sig = await signer.sign(data)
    expect(verifySignature(signer.did(), data, sig)).toBe(true)
    expect(verifySignature((await create()).did(), data, sig)).toBe(false)
    expect(verifySignature(signer.did(), randomBytes(64), sig)).toBe(false)
    const twin = highSTwin(sig, ORDERS[alg])
    expect(verifySignature(signer.did(), data, twin)).toBe(false)
    // The twin is a valid signature in plain ECDSA: only the low-S rule refuses it.
    expect(await reference(signer.did(), data, twin, { allowMalleableSig: true })).toBe(true)
  })
})
