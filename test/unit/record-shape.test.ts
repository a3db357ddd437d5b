import { parseCid } from '@atproto/lex-data'
import { describe, expect, it } from 'vitest'
import { MAX_RECORD_DEPTH, MAX_RECORD_NODES, shapeProblem } from '../../src/sync/records.ts'

describe('shapeProblem: bounds a record before anything recursive sees it', () => {
  it('passes ordinary records, bytes and CIDs whatever their size', () => {
    expect(shapeProblem({ $type: 'computer.aesthetic.mood', mood: 'hi', when: '2025-01-01T00:00:00Z' })).toBeUndefined()
    const cid = parseCid('bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm')
    expect(shapeProblem({ blob: { ref: cid, bytes: new Uint8Array(1_000_000) } })).toBeUndefined()
  })

  it('names a value nested too deep, or holding too many values, without recursing', () => {
    const nested = (depth: number) => JSON.parse(`${'['.repeat(depth)}${']'.repeat(depth)}`)
    expect(shapeProblem(nested(MAX_RECORD_DEPTH))).toBeUndefined()
    expect(shapeProblem(nested(MAX_RECORD_DEPTH + 1))).toBe(`record nests deeper than ${MAX_RECORD_DEPTH} levels`)
    expect(shapeProblem(nested(100_000))).toBe(`record nests deeper than ${MAX_RECORD_DEPTH} levels`)
    expect(shapeProblem({ many: Array.from({ length: MAX_RECORD_NODES + 1 }, () => 0) })).toBe(`record holds more than ${MAX_RECORD_NODES} values`)
  })
})
