import { describe, expect, it } from 'vitest'
import { parseConfig } from '../../src/config.ts'
import { ConfigError } from '../../src/errors.ts'
import { DecryptError, SecretBox } from '../../src/writer/secret-box.ts'

const OLD = 'o'.repeat(40)
const NEW = 'n'.repeat(40)

describe('MOODSYNC_SECRET_PREVIOUS', () => {
  it('is read beside MOODSYNC_SECRET, and absent by default', () => {
    expect(parseConfig({}).previousSecret).toBeUndefined()
    expect(parseConfig({ MOODSYNC_SECRET: NEW }).previousSecret).toBeUndefined()
    expect(parseConfig({ MOODSYNC_SECRET: NEW, MOODSYNC_SECRET_PREVIOUS: OLD })).toMatchObject({ secret: NEW, previousSecret: OLD })
  })

  it('is refused alone or short, naming the variable and never the value', () => {
    const refusal = (env: Record<string, string>) => {
      try {
        parseConfig(env)
      } catch (err) {
        return err as ConfigError
      }
      throw new Error('accepted')
    }
    const alone = refusal({ MOODSYNC_SECRET_PREVIOUS: OLD })
    expect(alone).toBeInstanceOf(ConfigError)
    expect(alone.variable).toBe('MOODSYNC_SECRET_PREVIOUS')
    expect(alone.message).not.toContain(OLD)
    const short = refusal({ MOODSYNC_SECRET: NEW, MOODSYNC_SECRET_PREVIOUS: 'too-short-key' })
    expect(short.message).toMatch(/^MOODSYNC_SECRET_PREVIOUS: must be at least 32 characters/)
    expect(short.message).not.toContain('too-short-key')
  })
})

describe('SecretBox with a previous key', () => {
  const sealedOld = new SecretBox(OLD).seal('password')

  it('opens values of either key, tells which, and seals with the new one only', () => {
    const box = new SecretBox(NEW, OLD)
    expect(box.unseal(sealedOld)).toEqual({ plaintext: 'password', current: false })
    const resealed = box.seal('password')
    expect(box.unseal(resealed)).toEqual({ plaintext: 'password', current: true })
    expect(new SecretBox(NEW).open(resealed)).toBe('password')
    expect(() => new SecretBox(OLD).open(resealed)).toThrow(DecryptError)
  })

  it('without the previous key, an old value is a DecryptError that names neither key nor value', () => {
    const err = (() => {
      try {
        new SecretBox(NEW).open(sealedOld)
      } catch (e) {
        return e as Error
      }
      throw new Error('opened')
    })()
    expect(err).toBeInstanceOf(DecryptError)
    for (const secret of [OLD, NEW, 'password', sealedOld]) expect(err.message).not.toContain(secret)
  })

  it('a previous key equal to the current one is the current one', () => {
    expect(new SecretBox(NEW, NEW).unseal(new SecretBox(NEW).seal('x'))).toEqual({ plaintext: 'x', current: true })
  })
})
