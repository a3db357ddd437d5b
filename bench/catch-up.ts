/**
 * Catching up after an outage, and memory over a long stream. The network's firehose for
 * `--hours` at `--rate` frames/s (one hour at 2,000/s by default: 7.2 million frames) is the
 * backlog a restart finds: frames recorded off the relay (bench/lib/network-capture.ts),
 * served over and over by a frame server in a child process (its memory and CPU are not ours)
 * as fast as we take them, through FirehoseSource -> Indexer -> the real Store on MongoDB
 * (MONGODB_URI, else the rig's server). Catch-up time / outage time is the figure (target
 * <= 1/50); RSS is sampled along the way (target: flat, and under 200 MB).
 *
 *   node bench/catch-up.ts [--hours 1] [--rate 2000] [--frames N (instead of hours x rate)] [--tiny]
 *   node bench/catch-up.ts --frames 10000000      # the memory run: 10 million frames
 *
 * The capture's knobs are firehose-path's (--commits, --accounts, --mood-every, --gen-seconds, --fresh).
 */
import { Indexer } from '../src/ingest/indexer.ts'
import { FirehoseSource } from '../src/ingest/firehose.ts'
import { COLLECTIONS } from '../src/store/collections.ts'
import { Store } from '../src/store/store.ts'
import { captureKeys, networkCapture, passCounter } from './lib/network-capture.ts'
import { fmt, int, knobs, median, progress, script, type Result, type RunOptions } from './lib/report.ts'
import { startFrameServer, startMongo } from './lib/servers.ts'

const SIZES = {
  tiny: { hours: 0, rate: 2000, frames: 4_000, commits: 80, accounts: 3, moodEvery: 10, genSeconds: 60, fresh: false },
  full: { hours: 1, rate: 2000, frames: 0, commits: 10_000, accounts: 16, moodEvery: 1000, genSeconds: 150, fresh: false },
}
const MB = 2 ** 20
/** The RSS baseline: a sample this far in, after warm-up. */
const BASELINE_AT = 0.05
const STALL_MS = 60_000

export async function run(opts: RunOptions & Partial<(typeof SIZES)['full']>): Promise<Result> {
  const o = knobs(opts, SIZES)
  // The frames stay out of this process: the frame server reads them from the file.
  const capture = await networkCapture(o, { fresh: o.fresh, frames: false })
  const wanted = o.frames > 0 ? o.frames : Math.round(o.hours * 3600 * o.rate)
  const repeat = Math.max(1, Math.ceil(wanted / capture.frameCount))
  const total = repeat * capture.frameCount
  const outageSeconds = total / o.rate
  const fixtures = new URL('./lib/fixtures.ts', import.meta.url).href
  const server = await startFrameServer({ module: fixtures, name: 'captureFrames', args: { file: capture.file }, cache: true }, { where: 'process', path: '/xrpc/com.atproto.sync.subscribeRepos', repeat })
  const mongo = await startMongo(opts.mongoUri)
  const store = new Store({ mongodb: { uri: mongo.uri, db: `bench_catchup_${process.pid}` } })
  const counts: Result['counts'] = {}
  const samples: { frames: number; rssMb: number; heapMb: number; heapTotalMb: number; buffersMb: number }[] = []
  try {
    await store.start()
    const source = new FirehoseSource({ url: server.url, idResolver: captureKeys(capture) })
    const passes = passCounter(capture.lastSeq)
    const abort = new AbortController()
    let done!: () => void
    const finished = new Promise<void>((resolve) => (done = resolve))
    const indexer = new Indexer({
      store,
      source,
      onApplied: (batch) => {
        if (passes.count(batch) >= repeat) done()
      },
    })
    // Frames taken so far: the socket's count, which the indexer's backpressure keeps close to what it applied.
    const sample = () => {
      const mem = process.memoryUsage()
      samples.push({ frames: source.stats.framesReceived, rssMb: mem.rss / MB, heapMb: mem.heapUsed / MB, heapTotalMb: mem.heapTotal / MB, buffersMb: mem.arrayBuffers / MB })
    }
    let lastProgress = { frames: 0, at: Date.now() }
    let stalled: Error | undefined
    const ticker = setInterval(() => {
      sample()
      const frames = source.stats.framesReceived
      if (frames !== lastProgress.frames) lastProgress = { frames, at: Date.now() }
      else if (Date.now() - lastProgress.at > STALL_MS) {
        stalled = new Error(`STALLED at ${frames} of ${total} frames`)
        done()
      }
      if (samples.length % 10 === 0) progress(`  ${int(frames)} frames (${fmt((frames / total) * 100, 0)}%), RSS ${fmt(samples.at(-1)!.rssMb)} MB`)
    }, 1000)
    const started = performance.now()
    const running = indexer.run(abort.signal)
    await Promise.race([finished, running])
    const seconds = (performance.now() - started) / 1000
    clearInterval(ticker)
    sample()
    abort.abort()
    await running
    if (stalled) throw stalled

    counts['passes applied'] = [passes.done, repeat]
    counts['moods in MongoDB'] = [await store.db.collection(COLLECTIONS.moods).countDocuments(), capture.moods.length]
    counts['quarantined'] = [await store.db.collection(COLLECTIONS.quarantine).countDocuments(), 0]
    counts['kept commits verified'] = [source.stats.verifiedCommits, capture.moods.length * repeat]
    counts['chain breaks (false resyncs)'] = [source.stats.chainBreaks, 0]

    const baseline = samples.find((s) => s.frames >= BASELINE_AT * total) ?? samples[0]!
    const after = samples.filter((s) => s.frames >= baseline.frames)
    const peak = Math.max(...after.map((s) => s.rssMb))
    const lastQuarter = median(after.slice(Math.floor(after.length * 0.75)).map((s) => s.rssMb))
    const ratio = seconds / outageSeconds
    const rate = total / seconds
    const metrics: Result['metrics'] = {
      'catch-up seconds': seconds,
      'outage seconds': outageSeconds,
      'catch-up / outage': ratio,
      'frames/s': rate,
      'peak RSS MB': peak,
      'baseline RSS MB': baseline.rssMb,
      'peak / baseline RSS': peak / baseline.rssMb,
    }
    const at = (f: number) => after.find((s) => s.frames >= f * total) ?? after.at(-1)!
    return {
      title: `catch-up: ${int(total)} relay frames (${fmt(outageSeconds / 3600, 2)} h of the network at ${int(o.rate)}/s; ${repeat} passes of a ${capture.frameCount}-frame capture, ${capture.moods.length} moods each) through FirehoseSource -> Indexer -> ${mongo.label}`,
      tables: [
        { headers: ['', 'value'], rows: [
          ['outage replayed', `${fmt(outageSeconds, 0)} s of the network`],
          ['catch-up time', `${fmt(seconds, 1)} s (${int(rate)} frames/s)`],
          ['catch-up / outage', `1/${fmt(1 / ratio, 0)} (target <= 1/50: ${ratio <= 1 / 50 ? 'met' : 'MISSED'})`],
        ] },
        {
          headers: ['frames taken', 'RSS MB', 'heap used MB', 'heap committed MB', 'Buffers MB'],
          rows: [0.05, 0.25, 0.5, 0.75, 1].map((f) => at(f)).map((s) => [int(s.frames), fmt(s.rssMb), fmt(s.heapMb), fmt(s.heapTotalMb), fmt(s.buffersMb)]),
        },
      ],
      notes: [
        `RSS: baseline ${fmt(baseline.rssMb)} MB at ${int(baseline.frames)} frames, peak ${fmt(peak)} MB (${fmt(peak / baseline.rssMb, 2)}x), median of the last quarter ${fmt(lastQuarter)} MB (target: flat and < 200 MB: ${peak < 200 && lastQuarter / baseline.rssMb < 1.2 ? 'met' : 'MISSED'})`,
        'keys come from the capture\'s saved map (a warm key cache); the frame server is a child process.',
      ],
      metrics,
      counts,
    }
  } finally {
    await store.db.dropDatabase().catch(() => {})
    await store.destroy()
    await mongo.stop()
    await server.stop()
  }
}

await script(import.meta, run)
