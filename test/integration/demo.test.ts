import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, inject, it } from 'vitest'

const run = promisify(execFile)

describe('npm start (scripts/demo.ts)', () => {
  for (const source of ['pds', 'firehose', 'jetstream', 'tap']) {
    it(`shows moods from @atproto/api and goat arriving in MongoDB through the real servers (${source}) and stops cleanly`, async () => {
      const { stdout } = await run(process.execPath, ['scripts/demo.ts', '--once', '--source', source], {
        env: { ...process.env, MONGODB_URI: inject('mongoUri') },
        timeout: 110_000,
      })
      expect(stdout.match(/-> MongoDB after \d+ ms/g)).toHaveLength(5)
      expect(stdout).toMatch(/"user":"auth0\|alice","mood":"morning light/)
      expect(stdout).toMatch(/"user":null,"mood":"posted from another ATProto app/)
      expect(stdout).toMatch(/"deleted":true/)
      expect(stdout).toMatch(/with goat \(goat record create\)/)
      expect(stdout).toMatch(/"mood":"coffee, then more code"/)
      expect(stdout).toMatch(/2 live, 1 deleted/)
      expect(stdout.trim().split('\n').pop()?.trim()).toBe('stopped cleanly')
    })
  }
})
