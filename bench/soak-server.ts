/**
 * The soak benchmark's Jetstream stand-in, run as a child process so that its memory and CPU
 * are not the indexer's: serves N Jetstream v1 frames, built one at a time as they are sent,
 * on 127.0.0.1, then keeps the connection open (as Jetstream does) and sends nothing more.
 *
 *   node bench/soak-server.ts --events N --records R --dids D --base BASE_US
 *
 * Prints `SOAK_SERVER ws://127.0.0.1:<port>/subscribe` on stdout when listening; exits when
 * its stdin closes, so it never outlives the benchmark.
 *
 * Event i has time_us = BASE_US + i (the `cursor` query parameter resumes there) and acts on
 * record i % R, owned by DID (i % R) % D. Pass p = floor(i / R) creates (p % 3 = 0), updates
 * (1) or deletes (2) every record, so each path of the indexer runs. Rkeys and revs are TIDs;
 * revs increase with i.
 *
 * Backpressure: frames are written while the socket's buffer holds under 1 MB; past that the
 * frame that crossed the mark carries a callback (run once it has reached the kernel) and the
 * pump stops until then. A paused consumer therefore stops the pump, and nothing polls.
 */
import { realpathSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'
import { MOOD_NSID } from '../src/sync/mood.ts'
import { option, tid } from './lib-table.ts'

const MAX_BUFFERED = 1 << 20
const MOODS = ['calm', 'tired but ok', 'listening to the rain 🌧️', 'coding all night', 'feeling ✨ sparkly ✨', 'meh', 'grateful 🙏', 'coffee ☕ then more coffee']
const B32 = 'abcdefghijklmnopqrstuvwxyz234567'

export type SoakOperation = 'create' | 'update' | 'delete'

export interface SoakPlan {
  events: number
  records: number
  dids: number
  baseUs: number
}

export function operationOf(plan: SoakPlan, i: number): SoakOperation {
  return (['create', 'update', 'delete'] as const)[Math.floor(i / plan.records) % 3]!
}

export function didOf(plan: SoakPlan, record: number): string {
  return `did:plc:soak${String(record % plan.dids).padStart(20, '0')}`
}

/** Record r's key: a TID a day before the stream starts, one microsecond apart per record. */
export function rkeyOf(plan: SoakPlan, record: number): string {
  return tid(plan.baseUs - 86_400_000_000 + record, 0)
}

export function moodOf(i: number): string {
  return `${MOODS[i % MOODS.length]} #${i}`
}

export function whenOf(plan: SoakPlan, i: number): string {
  return new Date(Math.floor(plan.baseUs / 1000) - 60_000 + i).toISOString()
}

function cidOf(i: number): string {
  let n = i
  let tail = ''
  for (let k = 0; k < 12; k++) {
    tail += B32[n % 32]
    n = Math.floor(n / 32)
  }
  return `bafyreisoak${'a'.repeat(36)}${tail}`
}

/** The frame of event i. */
export function frame(plan: SoakPlan, i: number): string {
  const timeUs = plan.baseUs + i
  const record = i % plan.records
  const operation = operationOf(plan, i)
  const commit: Record<string, unknown> = { rev: tid(timeUs, 1), operation, collection: MOOD_NSID, rkey: rkeyOf(plan, record) }
  if (operation !== 'delete') {
    commit.record = { $type: MOOD_NSID, mood: moodOf(i), when: whenOf(plan, i) }
    commit.cid = cidOf(i)
  }
  return JSON.stringify({ did: didOf(plan, record), time_us: timeUs, kind: 'commit', commit })
}

function serve(plan: SoakPlan, ws: WebSocket, from: number): void {
  let i = from
  const pump = (): void => {
    while (i < plan.events && ws.readyState === ws.OPEN) {
      const full = ws.bufferedAmount > MAX_BUFFERED
      if (full) {
        ws.send(frame(plan, i++), (err) => {
          if (!err) pump()
        })
        return
      }
      ws.send(frame(plan, i++))
    }
  }
  pump()
}

async function main(): Promise<void> {
  const plan: SoakPlan = {
    events: option('events', 'SOAK_EVENTS', 1_000_000),
    records: option('records', 'SOAK_RECORDS', 2000),
    dids: option('dids', 'SOAK_DIDS', 50),
    baseUs: option('base', 'SOAK_BASE_US', Date.now() * 1000 - 3_600_000_000),
  }
  const http = createServer((_req, res) => res.writeHead(404).end())
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false })
  wss.on('connection', (ws, req) => {
    const cursor = new URL(req.url ?? '/', 'http://127.0.0.1').searchParams.get('cursor')
    // Jetstream replays from the event whose time_us is the cursor, inclusive.
    const from = cursor === null ? 0 : Math.max(0, Number(cursor) - plan.baseUs)
    ws.on('error', () => {})
    serve(plan, ws, from)
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  process.stdout.write(`SOAK_SERVER ws://127.0.0.1:${(http.address() as AddressInfo).port}/subscribe\n`)
  const stop = () => {
    for (const ws of wss.clients) ws.terminate()
    wss.close()
    http.close()
    process.exit(0)
  }
  process.stdin.on('end', stop)
  process.stdin.on('close', stop)
  process.stdin.resume()
  process.on('SIGTERM', stop)
}

if (import.meta.filename === realpathSync(process.argv[1] ?? '')) await main()
