import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger, redactUrl } from '../../src/logger.ts'

describe('logger', () => {
  it('redacts credentials wherever they sit in a log line', () => {
    const lines: string[] = []
    const destination = new Writable({
      write(chunk, _enc, done) {
        lines.push(chunk.toString())
        done()
      },
    })
    const log = createLogger({ level: 'info', destination })
    log.info({ password: 'p1-secret', user: { atproto: { password: 'p2-secret' } }, session: { accessJwt: 'jwt-a', refreshJwt: 'jwt-r' } }, 'login')
    log.info({ req: { headers: { authorization: 'Bearer tok-secret' } } }, 'request')
    const text = lines.join('')
    for (const secret of ['p1-secret', 'p2-secret', 'jwt-a', 'jwt-r', 'tok-secret']) expect(text).not.toContain(secret)
    expect(text).toContain('[redacted]')
    expect(JSON.parse(lines[0]!).msg).toBe('login')
  })

  it('hides the user-info part of a URL', () => {
    expect(redactUrl('mongodb+srv://admin:hunter2@cluster.example/db')).toBe('mongodb+srv://***@cluster.example/db')
    expect(redactUrl('mongodb://127.0.0.1:27017')).toBe('mongodb://127.0.0.1:27017')
  })
})
