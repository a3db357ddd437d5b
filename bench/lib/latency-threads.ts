/**
 * The bench library, part 5: the threads bench/latency.ts runs beside the PDS (which runs
 * in-process, dev-env): bare clients of the streams, and the deployed indexer. On the PDS's
 * thread their callbacks would wait behind its request handling, and behind each other (a
 * relay's burst is verified frame after frame), as they never do in production. Each thread
 * posts its times on a clock every thread shares (`timeOrigin + now`). This module imports only
 * what those threads need, so a thread starts in a fraction of what the bench's imports cost.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import WebSocket from 'ws'
import { App } from '../../src/app/app.ts'
import { parseConfig } from '../../src/config.ts'
import type { IngestEvent, SavedPosition, Source } from '../../src/ingest/events.ts'
import { MOOD_NSID } from '../../src/sync/mood.ts'
import { waitFor } from '../../rig/wait.ts'
import { firehoseTap } from './servers.ts'

const PREFIX = `${MOOD_NSID}/`

/** Milliseconds on a clock every thread shares. */
export function clock(): number {
  return performance.timeOrigin + performance.now()
}

/**
 * Bare clients of the streams, on a worker thread: in this thread their callbacks would wait
 * behind our own work (a relay's burst is verified frame after frame), and arrive late. Each
 * mood's arrival is posted back on the shared clock (`timeOrigin + now`).
 */
export function bareClients(streams: { name: string; kind: 'firehose' | 'jetstream'; url: string }[], arrived: Map<string, Map<string, number>>): { opened: Promise<void>; close: () => Promise<void> } {
  for (const { name } of streams) arrived.set(name, new Map())
  const worker = new Worker(new URL(import.meta.url), { workerData: { bareClients: streams } })
  let open!: () => void
  const opened = new Promise<void>((resolve, reject) => {
    open = resolve
    worker.once('error', reject)
  })
  worker.on('message', (m: { opened?: true; stream?: string; rkey?: string; at?: number }) => {
    if (m.opened) open()
    else if (m.stream && m.rkey && m.at !== undefined && !arrived.get(m.stream)!.has(m.rkey)) arrived.get(m.stream)!.set(m.rkey, m.at)
  })
  return { opened, close: async () => void (await worker.terminate()) }
}

/** On the worker: one plain client per stream, each mood's arrival posted as it comes. */
async function watchStreams(streams: { name: string; kind: 'firehose' | 'jetstream'; url: string }[]): Promise<void> {
  const post = (stream: string, rkey: string, at: number) => parentPort!.postMessage({ stream, rkey, at })
  const clients = streams.map(({ name, kind, url }) => {
    if (kind === 'firehose') {
      return firehoseTap(url, (frame) => {
        const at = clock()
        if (frame.t === '#commit') for (const op of frame.ops ?? []) if (op.path?.startsWith(PREFIX)) post(name, op.path.slice(PREFIX.length), at)
      })
    }
    const u = new URL(url)
    u.searchParams.append('wantedCollections', MOOD_NSID)
    const ws = new WebSocket(u)
    ws.on('message', (data: Buffer) => {
      const at = clock()
      try {
        const event = JSON.parse(data.toString('utf8')) as { kind?: string; commit?: { collection?: string; rkey?: string } }
        if (event.kind === 'commit' && event.commit?.collection === MOOD_NSID && event.commit.rkey) post(name, event.commit.rkey, at)
      } catch {
        // Not an event a bench cares about.
      }
    })
    return { opened: new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject)) }
  })
  await Promise.all(clients.map((c) => c.opened))
  parentPort!.postMessage({ opened: true })
}

/**
 * The deployed indexer (`new App(parseConfig(env))`, `app.ingestService`) on a worker thread of
 * its own: the PDS runs in-process here (dev-env), and its request handling would otherwise
 * hold our event loop, as it never does in production. It posts, on the shared clock, when its
 * source yields each mood (and at which cursor) and when each batch is durable (`onApplied`).
 */
export function indexerThread(env: Record<string, string>, sourced: Map<string, { at: number; cursor: number }>, applied: Map<string, number>): { connected: Promise<void>; stop: () => Promise<void> } {
  const worker = new Worker(new URL(import.meta.url), { workerData: { indexer: env } })
  let connect!: () => void
  let stopped!: () => void
  const failed = new Promise<never>((_, reject) => worker.once('error', reject))
  failed.catch(() => {})
  const connected = Promise.race([new Promise<void>((resolve) => (connect = resolve)), failed])
  const done = new Promise<void>((resolve) => (stopped = resolve))
  worker.on('message', (m: { t: string; rkey?: string; cursor?: number; at?: number }) => {
    if (m.t === 'connected') connect()
    else if (m.t === 'stopped') stopped()
    else if (m.t === 'sourced' && !sourced.has(m.rkey!)) sourced.set(m.rkey!, { at: m.at!, cursor: m.cursor! })
    // Each mood is applied once a durable batch's cursor covers it (messages arrive in order).
    else if (m.t === 'applied') for (const [rkey, s] of sourced) if (s.cursor <= m.cursor! && !applied.has(rkey)) applied.set(rkey, m.at!)
  })
  return {
    connected,
    stop: async () => {
      worker.postMessage('stop')
      await Promise.race([done, failed])
      await worker.terminate()
    },
  }
}

/** On the indexer's thread. */
async function runIndexer(env: Record<string, string>): Promise<void> {
  const app = new App(parseConfig(env))
  const service = app.ingestService({
    source: noting(app.createSource(), (rkey, cursor, at) => parentPort!.postMessage({ t: 'sourced', rkey, cursor, at })),
    onApplied: (_batch, cursor) => cursor !== undefined && parentPort!.postMessage({ t: 'applied', cursor, at: clock() }),
  })
  await service.start()
  parentPort!.once('message', async () => {
    await service.destroy()
    parentPort!.postMessage({ t: 'stopped' })
  })
  await waitFor(() => service.source.stats.connected, { what: 'the source to connect' })
  parentPort!.postMessage({ t: 'connected' })
}

/** The source as is, noting when (and at which cursor) it first hands on each record op. */
function noting(inner: Source, note: (rkey: string, cursor: number, at: number) => void): Source {
  const seen = new Set<string>()
  return {
    id: inner.id,
    instance: inner.instance,
    stats: inner.stats,
    async *events(signal: AbortSignal, from?: SavedPosition): AsyncGenerator<IngestEvent[]> {
      for await (const events of inner.events(signal, from)) {
        const at = clock()
        for (const event of events) {
          if (event.kind !== 'commit') continue
          for (const op of event.ops) if (!seen.has(op.rkey)) seen.add(op.rkey), note(op.rkey, event.cursor, at)
        }
        yield events
      }
    },
  }
}

const thread = isMainThread ? undefined : (workerData as { bareClients?: Parameters<typeof watchStreams>[0]; indexer?: Record<string, string> } | null)
if (thread?.bareClients) await watchStreams(thread.bareClients)
else if (thread?.indexer) await runIndexer(thread.indexer)
