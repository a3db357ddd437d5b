import type { IngestEvent, Source, SourceStats } from '../src/ingest/events.ts'

/**
 * A source that yields a fixed list of events, then ends (as a stream does on abort): for the
 * indexer's tests, where what is under test is what happens after the source. Resuming from a
 * position yields the events at or after its cursor. `oneRead`: all of them in one array, as
 * one socket read would (one batch); else one array each.
 */
export function scriptedSource(events: readonly IngestEvent[], opts: { oneRead?: boolean } = {}): Source {
  const stats: SourceStats = { connected: true, reconnects: 0, framesReceived: 0 }
  return {
    id: 'scripted',
    instance: 'test',
    stats,
    async *events(_signal, from) {
      const due = events.filter((event) => from === undefined || (event.cursor ?? 0) >= from.cursor)
      if (opts.oneRead) yield due
      else for (const event of due) yield [event]
    },
  }
}
