import { spawnSync } from 'node:child_process'
import { createServer, type Server } from 'node:net'
import { dirname } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { main } from '../../src/cli/main.ts'
import { useTestDb } from '../../rig/mongo.ts'
import { sink } from '../../rig/sink.ts'

const t = useTestDb('first_run')


// What a newcomer meets first: a missing tool or a busy port is one line to act on.
describe('first run', () => {
  let busy: Server
  let port: number
  beforeAll(async () => {
    busy = createServer()
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
    port = (busy.address() as { port: number }).port
  })
  afterAll(() => new Promise<void>((resolve) => busy.close(() => resolve())))

  it('without Go on PATH, the rig says in one line what to install', () => {
    const res = spawnSync(process.execPath, ['rig/prepare.ts', '--only', 'goat'], { env: { PATH: dirname(process.execPath), HOME: process.env.HOME }, encoding: 'utf8', timeout: 60_000 })
    expect(res.status).toBe(1)
    expect(res.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^moodsync: the test rig needs `go`, which is not on PATH: install Go/)])
  })

  it('a health port already in use is one line and the configuration exit code, not a stack trace', async () => {
    const out = sink()
    const err = sink()
    const env = { MONGODB_URI: t.uri, MONGODB_DB: t.name, MOODSYNC_SOURCE: 'firehose', FIREHOSE_URL: 'ws://127.0.0.1:1/xrpc/com.atproto.sync.subscribeRepos', MOODSYNC_HTTP_PORT: String(port), LOG_LEVEL: 'silent' }
    expect(await main(['ingest'], { env, stdout: out.stream, stderr: err.stream })).toBe(78)
    expect(err.text()).toBe(`moodsync: configuration error: MOODSYNC_HTTP_PORT: 127.0.0.1:${port} is already in use (another moodsync?): stop what holds it, or choose another port (0 picks a free one)\n`)
  })
})
