import { describe, expect, it } from 'vitest'
import { run as jetstreamPath } from '../../bench/jetstream-path.ts'
import { problems, type Result } from '../../bench/lib/report.ts'
import { run as soak } from '../../bench/soak.ts'

// Every bench has a tiny mode that the suite runs, so a bench that breaks or mislabels fails
// here. The benches that need a PDS or MongoDB are in test/integration/bench-tiny.test.ts.
process.env.BENCH_QUIET = '1'

/** No failed check (counts as generated, metrics finite and > 0), and the first table's rows are `labels`. */
const expectSane = (result: Result, labels?: readonly string[]) => expect(problems(result, labels)).toEqual([])

describe('benches, tiny size (no servers but their own)', () => {
  it('jetstream-path: the indexer, bare ws and @skyware/jetstream each count every event', async () => {
    const result = await jetstreamPath({ size: 'tiny' })
    expectSane(result, [
      'ws client, count frames only (wire ceiling)',
      '(a) bare: ws + JSON.parse',
      'ours: JetstreamSource.events only',
      '(b) ours: JetstreamSource -> Indexer.run, MemoryStore',
      "(b') ours: JetstreamSource -> Indexer.run, a no-op sink (counts, keeps nothing)",
      '(c) @skyware/jetstream (Node WebSocket)',
      '@skyware/jetstream (ws)',
    ])
    expect(result.counts['indexer: moods inserted']).toEqual([2000, 2000])
    expect(result.counts['indexer, no-op sink: moods inserted']).toEqual([2000, 2000])
    expect(result.metrics['ours / bare']).toBeGreaterThan(0)
  })

  it('soak --sink none: the indexer applies every event of the stream to the in-memory store', async () => {
    const result = await soak({ size: 'tiny' })
    expectSane(result)
    expect(result.counts['events applied']).toEqual([3000, 3000])
    expect(result.tables[0]!.rows.at(-1)![0]).toBe('3,000')
  })
})
