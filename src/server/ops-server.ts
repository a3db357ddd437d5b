import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ConfigError, MoodsyncError } from '../errors.ts'
import { silentLogger, type Logger } from '../logger.ts'
import type { Registry } from '../metrics.ts'

export interface HealthReport {
  healthy: boolean
  [detail: string]: unknown
}

export interface OpsServerOptions {
  host: string
  port: number
  registry: Registry
  health: () => HealthReport
  /** Ready to serve (caught up); absent: /readyz answers as /healthz. */
  readiness?: () => HealthReport
  log?: Logger
}

/** The operator's window: GET /healthz (liveness) and /readyz (readiness), 200 or 503 with JSON, and GET /metrics (Prometheus text). */
export class OpsServer implements AsyncDisposable {
  readonly #opts: OpsServerOptions
  #server?: Server

  constructor(opts: OpsServerOptions) {
    this.#opts = opts
  }

  async start(): Promise<string> {
    const log = this.#opts.log ?? silentLogger
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end()
      } else if (path === '/healthz' || path === '/readyz') {
        const report = path === '/readyz' && this.#opts.readiness ? this.#opts.readiness() : this.#opts.health()
        res.writeHead(report.healthy ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify(report)}\n`)
      } else if (path === '/metrics') {
        const registry = this.#opts.registry
        registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
          (err: unknown) => {
            log.error({ err }, 'could not collect metrics')
            res.writeHead(500, { 'content-type': 'text/plain' }).end('could not collect metrics\n')
          },
        )
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz, /readyz or /metrics\n')
      }
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        // The usual first-run trip (another moodsync, or the demo, already listening): one line.
        if (err.code === 'EADDRINUSE') reject(new ConfigError('MOODSYNC_HTTP_PORT', `${this.#opts.host}:${this.#opts.port} is already in use (another moodsync?): stop what holds it, or choose another port (0 picks a free one)`))
        else reject(err)
      })
      server.listen(this.#opts.port, this.#opts.host, () => resolve())
    })
    this.#server = server
    const url = this.url
    log.info({ url }, 'health and metrics listening')
    return url
  }

  get url(): string {
    const address = this.#server?.address() as AddressInfo | null
    if (!address) throw new MoodsyncError('ops server is not started')
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
    return `http://${host}:${address.port}`
  }

  async destroy(): Promise<void> {
    const server = this.#server
    if (!server) return
    this.#server = undefined
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy()
  }
}
