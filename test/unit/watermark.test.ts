import { describe, expect, it } from 'vitest'
import { Watermark } from '../../src/ingest/watermark.ts'

describe('watermark: what a heartbeat proves', () => {
  it('a connection opened at the tail is live at once: the position moves to the margin behind the pong', () => {
    const w = new Watermark({ marginMs: 1_000, timeCursors: true })
    w.connecting(false)
    const at = Date.now()
    expect(w.heartbeat(at)).toEqual({ kind: 'heartbeat', emittedAt: at, cursor: (at - 1_000) * 1000 })
  })

  it('a resumed connection proves nothing until an event emitted after it opened arrives', () => {
    const w = new Watermark({ marginMs: 1_000, timeCursors: true })
    w.connecting(true)
    const opened = Date.now()
    expect(w.heartbeat(opened + 5_000)).toBeUndefined()
    // Replayed: emitted before the connection opened.
    w.delivered(opened - 60_000)
    expect(w.heartbeat(opened + 6_000)).toBeUndefined()
    w.delivered(opened + 1)
    expect(w.heartbeat(opened + 7_000)).toMatchObject({ emittedAt: opened + 7_000, cursor: (opened + 6_000) * 1000 })
  })

  it('never moves the position back, nor past an event it has not seen (the margin)', () => {
    const w = new Watermark({ marginMs: 10_000, timeCursors: true })
    w.connecting(false)
    const now = Date.now()
    w.delivered(now)
    // The last event is newer than the pong minus the margin: lag only, the position stays.
    expect(w.heartbeat(now + 1_000)).toEqual({ kind: 'heartbeat', emittedAt: now + 1_000 })
    const later = w.heartbeat(now + 20_000)!
    expect(later.cursor).toBe((now + 10_000) * 1000)
    expect(w.heartbeat(now + 15_000)?.cursor).toBeUndefined()
  })

  it('sequence-numbered sources get heartbeats for lag, never a time cursor', () => {
    const w = new Watermark({ timeCursors: false })
    w.connecting(false)
    expect(w.heartbeat(Date.now())).toEqual({ kind: 'heartbeat', emittedAt: expect.any(Number) })
  })
})
