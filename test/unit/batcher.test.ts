import { describe, expect, it } from 'vitest'
import { batches } from '../../src/ingest/batcher.ts'

async function* counted(n: number, pulled: { count: number }) {
  for (let i = 0; i < n; i++) {
    pulled.count++
    yield [i]
  }
}

describe('batches', () => {
  it('keeps order, loses nothing, and caps batch size', async () => {
    const pulled = { count: 0 }
    const seen: number[] = []
    for await (const batch of batches(counted(2500, pulled), { maxSize: 100, highWater: 300 })) {
      expect(batch.length).toBeLessThanOrEqual(100)
      seen.push(...batch)
    }
    expect(seen).toEqual(Array.from({ length: 2500 }, (_, i) => i))
  })

  it('stops pulling at the high-water mark while the consumer is busy', async () => {
    const pulled = { count: 0 }
    const it = batches(counted(10_000, pulled), { maxSize: 10, highWater: 50 })
    await it.next()
    // Give the pump every chance to run ahead.
    for (let i = 0; i < 100; i++) await new Promise((resolve) => setImmediate(resolve))
    expect(pulled.count).toBeLessThanOrEqual(61)
    await it.return(undefined)
  })

  it('passes a source failure to the consumer after what came before', async () => {
    async function* failing() {
      yield [1]
      throw new Error('socket exploded')
    }
    const seen: number[] = []
    await expect(async () => {
      for await (const batch of batches(failing(), { maxSize: 10, highWater: 10 })) seen.push(...batch)
    }).rejects.toThrow('socket exploded')
    expect(seen).toEqual([1])
  })
})
