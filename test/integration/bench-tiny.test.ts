import { describe, expect, inject, it } from 'vitest'
import { LABELS as APPLY_LABELS, run as apply } from '../../bench/apply.ts'
import { BIG_LABELS, LABELS as BACKFILL_LABELS, run as backfill } from '../../bench/backfill.ts'
import { LABELS as FIREHOSE_LABELS, run as firehosePath } from '../../bench/firehose-path.ts'
import { MODES as LATENCY_MODES, run as latency } from '../../bench/latency.ts'
import { problems, type Result } from '../../bench/lib/report.ts'
import { run as catchUp } from '../../bench/catch-up.ts'
import { run as soak } from '../../bench/soak.ts'
import { LABELS as WRITER_LABELS, run as writer } from '../../bench/writer.ts'

// Every bench has a tiny mode that the suite runs, so a bench that breaks or mislabels fails
// here; these need a PDS (each starts its own TestNetwork) or MongoDB (the suite's server).
process.env.BENCH_QUIET = '1'
const mongoUri = () => inject('mongoUri')

/** No failed check (counts as generated, metrics finite and > 0), and the first table's rows are `labels`. */
const expectSane = (result: Result, labels?: readonly string[]) => expect(problems(result, labels)).toEqual([])

describe('benches, tiny size', () => {
  it('apply: every batch size inserts every op; the replay finds all unchanged', async () => {
    const result = await apply({ size: 'tiny', mongoUri: mongoUri() })
    expectSane(result, Object.values(APPLY_LABELS))
    expect(result.counts['replay: unchanged']).toEqual([40, 40])
  })

  it('firehose-path: on frames recorded off the relay, ours and plain keep exactly the moods written, every kept commit verified', async () => {
    const result = await firehosePath({ size: 'tiny', fresh: true })
    expectSane(result, Object.values(FIREHOSE_LABELS))
    // Moods are written by chance (1 commit in 10 of the platform's one account): some, all kept, each verified.
    expect(result.counts['ours: moods kept']![0]).toBeGreaterThan(0)
    expect(result.counts['ours: commits verified']![0]).toBeGreaterThan(0)
  })

  it('catch-up: every pass of the recorded stream is applied to MongoDB, every kept commit verified, nothing quarantined', async () => {
    const result = await catchUp({ size: 'tiny', mongoUri: mongoUri() })
    expectSane(result)
    expect(result.counts['passes applied']![0]).toBeGreaterThan(1)
  })

  it('latency: every mood written on the PDS is applied and timed, in both modes', async () => {
    const result = await latency({ size: 'tiny', mongoUri: mongoUri() })
    expectSane(result, Object.values(LATENCY_MODES))
    expect(result.counts['jetstream: moods timed']).toEqual([5, 5])
  })

  it('writer: the outbox writes every mood once, in the least PDS requests', async () => {
    const result = await writer({ size: 'tiny', mongoUri: mongoUri() })
    expectSane(result, Object.values(WRITER_LABELS))
    expect(result.counts['ours: records on the PDS']).toEqual([20, 20])
  })

  it('backfill: run 1 stores every mood, run 2 writes nothing; the big repo reads its moods alone', async () => {
    const result = await backfill({ size: 'tiny', mongoUri: mongoUri() })
    expectSane(result, Object.values(BACKFILL_LABELS))
    expect(result.counts['round 1: run 1 documents stored']).toEqual([15, 15])
    expect(result.counts['big repo round 1: moods read']).toEqual([10, 10])
    expect(result.tables.flatMap((t) => t.rows.map((r) => r[0]))).toEqual(expect.arrayContaining(Object.values(BIG_LABELS)))
  })

  it('soak --sink mongo: MongoDB ends as the last event on each record says', async () => {
    const result = await soak({ size: 'tiny', mongoUri: mongoUri(), sink: 'mongo' })
    expectSane(result)
    expect(result.counts['documents not as the last event says']).toEqual([0, 0])
  })
})
