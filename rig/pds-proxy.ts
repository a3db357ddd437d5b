import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export type ProxyMode =
  | { kind: 'pass' }
  /** The PDS is unreachable: every connection is reset. */
  | { kind: 'down' }
  /** The PDS does the work but the answer never arrives, for the next `count` matching calls. */
  | { kind: 'drop-answer'; method: string; count: number }
  /** The PDS answers 429 with RateLimit-* headers for the next `count` matching calls. */
  | { kind: 'rate-limit'; method: string; count: number; resetInSeconds: number }

/**
 * An HTTP proxy in front of the test PDS that counts every XRPC call by method (the PDS's
 * own view of what the writer asked) and can fail in the ways a real network does. The PDS
 * behind it is real; the faults (down, an answer lost after the commit, a 429) are injected
 * here because no real PDS can be made to produce them on demand.
 */
export class PdsProxy {
  mode: ProxyMode = { kind: 'pass' }
  readonly calls = new Map<string, number>()
  /** `rkey` of every record write asked (putRecord, createRecord, deleteRecord, each of applyWrites), in order. */
  readonly writes: string[] = []
  readonly #target: string
  readonly #server: Server

  private constructor(target: string, server: Server) {
    this.#target = target
    this.#server = server
  }

  static async start(target: string): Promise<PdsProxy> {
    const server = createServer()
    const proxy = new PdsProxy(target, server)
    server.on('request', (req, res) => void proxy.#handle(req, res))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return proxy
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`
  }

  count(method: string): number {
    return this.calls.get(method) ?? 0
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = (req.url ?? '').split('?')[0]!.replace(/^\/xrpc\//, '')
    this.calls.set(method, (this.calls.get(method) ?? 0) + 1)
    const mode = this.mode
    if (mode.kind === 'down') return void req.socket.destroy()
    if (mode.kind === 'rate-limit' && mode.method === method && mode.count > 0) {
      mode.count--
      const reset = Math.ceil(Date.now() / 1000) + mode.resetInSeconds
      res.writeHead(429, { 'content-type': 'application/json', 'ratelimit-limit': '5000', 'ratelimit-remaining': '0', 'ratelimit-reset': String(reset), 'ratelimit-policy': '5000;w=3600' })
      return void res.end(JSON.stringify({ error: 'RateLimitExceeded', message: 'Rate Limit Exceeded' }))
    }
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    if (WRITES.has(method)) this.writes.push(...rkeysOf(method, Buffer.concat(chunks)))
    const headers = new Headers()
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'content-length') headers.set(k, v)
    const upstream = await fetch(`${this.#target}${req.url}`, { method: req.method, headers, body: chunks.length ? Buffer.concat(chunks) : undefined })
    const body = Buffer.from(await upstream.arrayBuffer())
    if (mode.kind === 'drop-answer' && mode.method === method && mode.count > 0) {
      mode.count--
      return void req.socket.destroy() // committed on the PDS, lost on the way back
    }
    const out: Record<string, string> = {}
    upstream.headers.forEach((v, k) => {
      if (k !== 'content-encoding' && k !== 'transfer-encoding' && k !== 'content-length') out[k] = v
    })
    res.writeHead(upstream.status, out)
    res.end(body)
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}

const WRITES = new Set(['com.atproto.repo.putRecord', 'com.atproto.repo.createRecord', 'com.atproto.repo.deleteRecord', 'com.atproto.repo.applyWrites'])

function rkeysOf(method: string, body: Buffer): string[] {
  try {
    const input = JSON.parse(body.toString('utf8')) as { rkey?: string; writes?: { rkey?: string }[] }
    if (method === 'com.atproto.repo.applyWrites') return (input.writes ?? []).map((w) => w.rkey ?? '?')
    return [input.rkey ?? '?']
  } catch {
    return ['?']
  }
}
