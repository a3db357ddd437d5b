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
 *
 * During a rotation the box also holds the previous key (MOODSYNC_SECRET_PREVIOUS): values open
 * with either, and are always sealed with the current one. The format carries no key id (values
 * sealed before rotation existed must keep opening), so opening tries the keys in turn; the GCM
 * tag makes a wrong key a cheap, certain miss.
 */
export class SecretBox {
  readonly #keys: Buffer[]

  constructor(secret: string, previous?: string) {
    this.#keys = [scryptSync(secret, SALT, 32), ...(previous !== undefined && previous !== secret ? [scryptSync(previous, SALT, 32)] : [])]
  }

  seal(plaintext: string): string {
    const nonce = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.#keys[0]!, nonce)
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    return [VERSION, nonce.toString('base64url'), cipher.getAuthTag().toString('base64url'), body.toString('base64url')].join(':')
  }

  open(sealed: string): string {
    return this.unseal(sealed).plaintext
  }

  /** The plaintext, and whether the current key sealed it (false: the previous one, to re-seal). */
  unseal(sealed: string): { plaintext: string; current: boolean } {
    const [version, nonce, tag, body] = sealed.split(':')
    if (version !== VERSION || !nonce || !tag || body === undefined) throw new DecryptError('not a moodsync sealed value')
    for (const [i, key] of this.#keys.entries()) {
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(nonce, 'base64url'))
        decipher.setAuthTag(Buffer.from(tag, 'base64url'))
        return { plaintext: Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8'), current: i === 0 }
      } catch {
        // Not this key: try the next one.
      }
    }
    // Never echo the value or the key: only that it could not be opened.
    throw new DecryptError('could not decrypt a stored value: wrong MOODSYNC_SECRET or tampered value')
  }
}
