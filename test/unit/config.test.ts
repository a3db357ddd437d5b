import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { DEFAULTS, parseConfig, requireSecret } from '../../src/config.ts'
import { ConfigError } from '../../src/errors.ts'
import { hasDevTools, main } from '../../src/cli/main.ts'
import { Writable } from 'node:stream'

function capture() {
  let text = ''
  const stream = new Writable({
    write(chunk, _enc, done) {
      text += chunk.toString()
      done()
    },
  })
  return { stream, text: () => text }
}

describe('parseConfig', () => {
  it('fills every default from CONTRACT.md', () => {
    const config = parseConfig({})
    expect(config.mongodb).toEqual({ uri: DEFAULTS.MONGODB_URI, db: 'aesthetic' })
    expect(config.pdsUrl).toBe('https://at.aesthetic.computer')
    expect(config.plcUrl).toBe('https://plc.directory')
    expect(config.source).toBe('jetstream')
    expect(config.http.host).toBe('127.0.0.1')
    expect(config.secret).toBeUndefined()
    expect(config.tap).toEqual({ url: 'http://127.0.0.1:2480', adminPassword: undefined, addUsers: true })
    expect(config.idleTimeoutSeconds).toBe(30)
  })

  it('reads the Tap source settings; its password is kept as given', () => {
    const config = parseConfig({ MOODSYNC_SOURCE: 'tap', TAP_URL: 'https://tap.example/', TAP_ADMIN_PASSWORD: 'hunter2', MOODSYNC_TAP_ADD_USERS: 'OFF' })
    expect(config.source).toBe('tap')
    expect(config.tap).toEqual({ url: 'https://tap.example', adminPassword: 'hunter2', addUsers: false })
  })

  it('reads set values, trimming and normalising', () => {
    const config = parseConfig({
      MONGODB_URI: ' mongodb+srv://u:p@cluster0.example.net/?retryWrites=true ',
      MONGODB_DB: 'moods_test',
      PDS_URL: 'http://127.0.0.1:2583/',
      JETSTREAM_URL: 'ws://127.0.0.1:6008/subscribe',
      MOODSYNC_SOURCE: 'firehose',
      LOG_LEVEL: 'DEBUG',
      MOODSYNC_HTTP_PORT: '0',
      MOODSYNC_SECRET: 'x'.repeat(32),
    })
    expect(config.mongodb.db).toBe('moods_test')
    expect(config.pdsUrl).toBe('http://127.0.0.1:2583')
    expect(config.source).toBe('firehose')
    expect(config.logLevel).toBe('debug')
    expect(config.http.port).toBe(0)
    expect(config.secret).toHaveLength(32)
  })

  const bad: [string, string, RegExp][] = [
    ['MONGODB_URI', 'postgres://localhost/x', /^MONGODB_URI: must be a connection string/],
    ['MONGODB_DB', 'has/slash', /^MONGODB_DB: .*not a valid MongoDB database name/],
    ['PDS_URL', 'not a url', /^PDS_URL: "not a url" is not a URL$/],
    ['PDS_URL', 'ftp://pds.example', /^PDS_URL: must use http or https/],
    ['JETSTREAM_URL', 'https://jetstream.example/subscribe', /^JETSTREAM_URL: must use ws or wss/],
    ['FIREHOSE_URL', '::', /^FIREHOSE_URL: .* is not a URL/],
    ['PLC_URL', 'https://user:pw@plc.example', /^PLC_URL: must not carry credentials$/],
    ['MOODSYNC_SOURCE', 'kafka', /^MOODSYNC_SOURCE: "kafka" is not one of jetstream, firehose, tap$/],
    ['TAP_URL', 'ws://tap.example', /^TAP_URL: must use http or https/],
    ['TAP_URL', 'http://admin:pw@tap.example', /^TAP_URL: must not carry credentials$/],
    ['MOODSYNC_TAP_ADD_USERS', 'maybe', /^MOODSYNC_TAP_ADD_USERS: "maybe" is not one of on, off$/],
    ['LOG_LEVEL', 'loud', /^LOG_LEVEL: "loud" is not one of/],
    ['MOODSYNC_HTTP_PORT', '70000', /^MOODSYNC_HTTP_PORT: "70000" is not a port number/],
    ['MOODSYNC_HTTP_PORT', 'abc', /^MOODSYNC_HTTP_PORT: "abc" is not a port number/],
    ['MOODSYNC_HTTP_HOST', 'a b', /^MOODSYNC_HTTP_HOST: .*not a host/],
    ['MOODSYNC_IDLE_TIMEOUT_SECONDS', '0', /^MOODSYNC_IDLE_TIMEOUT_SECONDS: "0" is not a positive number of seconds$/],
    ['MOODSYNC_SECRET', 'short', /^MOODSYNC_SECRET: must be at least 32 characters \(got 5\)$/],
  ]
  for (const [variable, value, message] of bad) {
    it(`${variable}=${JSON.stringify(value)} fails with one line naming it`, () => {
      let error: unknown
      try {
        parseConfig({ [variable]: value })
      } catch (err) {
        error = err
      }
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).variable).toBe(variable)
      expect((error as Error).message).toMatch(message)
      expect((error as Error).message).not.toContain('\n')
    })
  }

  it('never echoes a connection string, which may hold a password', () => {
    expect(() => parseConfig({ MONGODB_URI: 'mongo://admin:hunter2@db' })).toThrow(ConfigError)
    try {
      parseConfig({ MONGODB_URI: 'mongo://admin:hunter2@db' })
    } catch (err) {
      expect((err as Error).message).not.toContain('hunter2')
    }
  })

  it('requireSecret names MOODSYNC_SECRET when it is missing', () => {
    expect(() => requireSecret(parseConfig({}), 'encrypt credentials')).toThrow(/^MOODSYNC_SECRET: is required to encrypt credentials/)
    expect(requireSecret(parseConfig({ MOODSYNC_SECRET: 's'.repeat(40) }), 'x')).toHaveLength(40)
  })
})

describe('moodsync CLI start-up', () => {
  it('stops with one clear line for bad configuration', async () => {
    const out = capture()
    const err = capture()
    const code = await main(['setup'], { stdout: out.stream, stderr: err.stream, env: { LOG_LEVEL: 'loud' } })
    expect(code).toBe(78)
    expect(err.text()).toBe('moodsync: configuration error: LOG_LEVEL: "loud" is not one of fatal, error, warn, info, debug, trace, silent\n')
    expect(out.text()).toBe('')
  })

  it('answers --help with the commands and an unknown command with exit 2', async () => {
    const out = capture()
    expect(await main(['--help'], { stdout: out.stream })).toBe(0)
    expect(out.text()).toMatch(/^  ingest /m)
    // Listed only where it can run: a checkout, with the lexicon builder (a dev dependency) installed.
    expect(hasDevTools()).toBe(true)
    expect(out.text()).toMatch(/^  codegen /m)
    const err = capture()
    expect(await main(['frobnicate'], { stdout: out.stream, stderr: err.stream })).toBe(2)
    expect(err.text()).toMatch(/unknown command "frobnicate"/)
  })

  it('--version prints the package version', async () => {
    const out = capture()
    expect(await main(['--version'], { stdout: out.stream })).toBe(0)
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    expect(out.text()).toBe(`moodsync ${version}\n`)
  })
})
