/**
 * Jetstream path throughput: events from a WebSocket through our indexer (JetstreamSource ->
 * Indexer, on the in-memory store of rig/memory-store.ts: everything but MongoDB), against a
 * bare `ws` + `JSON.parse` loop (the baseline) and @skyware/jetstream.
 *
 *   node bench/jetstream-path.ts [--events 200000] [--rounds 5] [--tiny]
 *
 * The frame server (bench/lib/servers.ts) runs on a worker thread and sends every connection
 * the same N Jetstream v1 commit-create frames, then closes; each contender counts N events.
 */
import { Jetstream } from '@skyware/jetstream'
import WebSocket from 'ws'
import { Indexer } from '../src/ingest/indexer.ts'
import { JetstreamSource } from '../src/ingest/jetstream.ts'
import { COLLECTIONS } from '../src/store/collections.ts'
import { MOOD_NSID } from '../src/sync/mood.ts'
import { int, knobs, pairedRatio, ratio, rounds, script, summarise, verdict, type Result, type RunOptions, type Sample } from './lib/report.ts'
import { MemoryStore } from '../rig/memory-store.ts'
import { startFrameServer } from './lib/servers.ts'

const SIZES = { tiny: { events: 2_000, rounds: 1 }, full: { events: 200_000, rounds: 5 } }

export const LABELS = {
  wire: 'ws client, count frames only (wire ceiling)',
  bare: '(a) bare: ws + JSON.parse',
  source: 'ours: JetstreamSource.events only',
  ours: '(b) ours: JetstreamSource -> Indexer.run, MemoryStore',
  sink: "(b') ours: JetstreamSource -> Indexer.run, a no-op sink (counts, keeps nothing)",
  skyware: '(c) @skyware/jetstream (Node WebSocket)',
  skywareWs: '@skyware/jetstream (ws)',
} as const

export async function run(opts: RunOptions & Partial<(typeof SIZES)['full']>): Promise<Result> {
  const { events: n, rounds: roundCount } = knobs(opts, SIZES)
  const fixtures = new URL('./lib/fixtures.ts', import.meta.url).href
  const server = await startFrameServer({ module: fixtures, name: 'jetstreamFrames', args: { count: n }, cache: true }, { where: 'thread', path: '/subscribe', close: true })
  const counts: Result['counts'] = {}
  try {
    const w = Math.max(1, n >> 2)
    const contender = (key: keyof typeof LABELS, measure: (url: string, n: number) => Promise<Sample>) => ({ name: LABELS[key], run: () => measure(server.url, n), warm: () => measure(server.url, w) })
    const results = await rounds(
      [
        contender('wire', (url, n) => wsCount(url, n, () => true)),
        contender('bare', (url, n) => wsCount(url, n, (data) => (JSON.parse(data.toString()) as { kind?: string }).kind === 'commit')),
        contender('source', oursSource),
        contender('ours', (url, n) => oursIndexer(url, n, counts)),
        contender('sink', (url, n) => oursIndexer(url, n, counts, false)),
        contender('skyware', (url, n) => skyware(url, n)),
        contender('skywareWs', (url, n) => skyware(url, n, WebSocket)),
      ],
      { rounds: roundCount, warmup: true },
    )
    const summary = summarise(results)
    const rows = Object.values(LABELS).map((name) => {
      const s = summary.get(name)!
      return [name, int(s.median), `${int(s.min)}–${int(s.max)}`, ratio(pairedRatio(results, name, LABELS.bare))]
    })
    const metrics: Result['metrics'] = Object.fromEntries(Object.entries(LABELS).map(([key, name]) => [`${key} events/s`, summary.get(name)!.median]))
    metrics['ours / bare'] = pairedRatio(results, LABELS.ours, LABELS.bare)
    metrics['ours / skyware'] = pairedRatio(results, LABELS.ours, LABELS.skyware)
    metrics['ours / skyware (ws)'] = pairedRatio(results, LABELS.ours, LABELS.skywareWs)
    metrics['source only / bare'] = pairedRatio(results, LABELS.source, LABELS.bare)
    metrics['sink / bare'] = pairedRatio(results, LABELS.sink, LABELS.bare)
    metrics['sink / skyware'] = pairedRatio(results, LABELS.sink, LABELS.skyware)
    return {
      title: `Jetstream path: ${n.toLocaleString('en-US')} commit-create events per run, ${roundCount} rounds (order rotated), median; frame server on a worker thread`,
      tables: [
        { headers: ['contender', 'events/s (median)', 'min–max', 'vs bare'], rows },
        {
          headers: ['ratio (median of per-round ratios)', 'value', 'target'],
          rows: [
            ['(b) ours / (a) bare', ratio(metrics['ours / bare']), verdict(metrics['ours / bare'], 0.9)],
            ['(b) ours / (c) skyware', ratio(metrics['ours / skyware']), verdict(metrics['ours / skyware'], 1.1)],
            ['(b) ours / skyware (ws)', ratio(metrics['ours / skyware (ws)']), '—'],
            ["(b') ours, no-op sink / (a) bare", ratio(metrics['sink / bare']), verdict(metrics['sink / bare'], 0.9)],
            ["(b') ours, no-op sink / (c) skyware", ratio(metrics['sink / skyware']), verdict(metrics['sink / skyware'], 1.1)],
            ['ours, source only / bare', ratio(metrics['source only / bare']), '—'],
          ],
        },
      ],
      notes: ['(b) validates every record against the lexicon and keeps the cursor exact; (a) and (c) do neither.'],
      metrics,
      counts,
    }
  } finally {
    await server.stop()
  }
}

/** A `ws` client counting the frames `counts` accepts, until the n-th. */
function wsCount(url: string, n: number, counts: (data: Buffer) => boolean): Promise<Sample> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    let count = 0
    ws.on('message', (data: Buffer) => {
      if (!counts(data) || ++count !== n) return
      resolve({ events: n, ms: performance.now() - started })
      ws.terminate()
    })
    ws.on('error', reject)
    ws.on('close', () => count < n && reject(new Error(`closed after ${count} of ${n} events`)))
  })
}

/** JetstreamSource.events (websocketFeed + parseJetstreamEvent), nothing after it. */
async function oursSource(url: string, n: number): Promise<Sample> {
  const abort = new AbortController()
  const source = new JetstreamSource({ url })
  const started = performance.now()
  let count = 0
  outer: for await (const events of source.events(abort.signal)) {
    for (const event of events) {
      if (event.kind !== 'commit') throw new Error(`unexpected ${event.kind} event`)
      if (++count === n) break outer
    }
  }
  const ms = performance.now() - started
  abort.abort()
  if (count < n || source.stats.reconnects > 0) throw new Error(`source: ${count} of ${n} events, ${source.stats.reconnects} reconnects`)
  return { events: n, ms }
}

/**
 * The real Indexer on the in-memory store (or, `keep: false`, a sink that only counts: the
 * store's own Map is a test double's cost, not the path's); the clock stops when the n-th op is applied.
 */
async function oursIndexer(url: string, n: number, counts: Result['counts'], keep = true): Promise<Sample> {
  const abort = new AbortController()
  const source = new JetstreamSource({ url })
  let ms = 0
  const store = new MemoryStore({ keep })
  // The clock stops when the indexer says the batch holding the last event is applied.
  const onApplied = () => {
    if (store.applied.inserted + store.applied.updated + store.applied.deleted + store.applied.stale < n) return
    ms ||= performance.now() - started
    abort.abort()
  }
  const indexer = new Indexer({ store, source, onApplied })
  const started = performance.now()
  await indexer.run(abort.signal)
  const label = keep ? 'indexer' : 'indexer, no-op sink'
  counts[`${label}: moods inserted`] = [store.applied.inserted, n]
  if (keep) counts['indexer: moods live in the store'] = [store.live(COLLECTIONS.moods), n]
  counts[`${label}: quarantined`] = [store.quarantined.length, 0]
  counts[`${label}: reconnects`] = [source.stats.reconnects, 0]
  return { events: n, ms }
}

/** @skyware/jetstream with an onCreate handler; `ws` is its WebSocket (default: Node's). */
function skyware(url: string, n: number, ws?: typeof WebSocket): Promise<Sample> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const jetstream = new Jetstream({ endpoint: url, wantedCollections: [MOOD_NSID], ...(ws ? { ws } : {}) })
    let count = 0
    jetstream.onCreate(MOOD_NSID, () => {
      if (++count !== n) return
      resolve({ events: n, ms: performance.now() - started })
      jetstream.close()
    })
    jetstream.on('error', (err: Error) => reject(err))
    jetstream.on('close', () => count < n && reject(new Error(`closed after ${count} of ${n} events`)))
    jetstream.start()
  })
}

await script(import.meta, run)
