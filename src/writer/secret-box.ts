import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto'
import { MoodsyncError } from '../errors.ts'

const VERSION = 'v1'
/** A fixed, public salt: the secret carries the entropy; the salt only versions the key. */
const SALT = 'moodsync/credentials/v1'

export class DecryptError extends MoodsyncError {
  override name = 'DecryptError'
}

/**
 * AES-256-GCM with a key derived once from MOODSYNC_SECRET (scrypt). Each value gets a random
 * 96-bit nonce; the auth tag makes a wrong key or a tampered value fail loudly, never decrypt
 * to garbage. Format: `v1:<nonce>:<tag>:<ciphertext>` (base64url parts).
 */
export class SecretBox {
  readonly #key: Buffer

  constructor(secret: string) {
    this.#key = scryptSync(secret, SALT, 32)
  }

  seal(plaintext: string): string {
    const nonce = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce)
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    return [VERSION, nonce.toString('base64url'), cipher.getAuthTag().toString('base64url'), body.toString('base64url')].join(':')
  }

  open(sealed: string): string {
    const [version, nonce, tag, body] = sealed.split(':')
    if (version !== VERSION || !nonce || !tag || body === undefined) throw new DecryptError('not a moodsync sealed value')
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, Buffer.from(nonce, 'base64url'))
      decipher.setAuthTag(Buffer.from(tag, 'base64url'))
      return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8')
    } catch {
      // Never echo the value or the key: only that it could not be opened.
      throw new DecryptError('could not decrypt a stored credential: wrong MOODSYNC_SECRET or tampered value')
    }
  }
}
