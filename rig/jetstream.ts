import { join } from 'node:path'
import { answers, Daemon, freePort } from './daemon.ts'
import { PlcMultikeyProxy } from './plc-multikey.ts'
import { goTool } from './tools.ts'

/**
 * Bluesky's Jetstream, the JSON stream moodsync's default source mode reads in production.
 * `v1` (classic, github.com/bluesky-social/jetstream before v0.2) reads one firehose directly,
 * here the PDS's; `v2` (v0.2.0, the current server) reads a relay and needs the PLC in its
 * current key form (rig/plc-multikey.ts).
 */
export class JetstreamDaemon {
  /** Its `/subscribe` endpoint. */
  readonly url: string
  readonly #daemon: Daemon
  readonly #plc?: PlcMultikeyProxy
  readonly #v2?: { relayUrl: string; plcUrl: string }

  private constructor(url: string, daemon: Daemon, plc?: PlcMultikeyProxy, v2?: { relayUrl: string; plcUrl: string }) {
    this.url = url
    this.#daemon = daemon
    this.#plc = plc
    this.#v2 = v2
  }

  /** Classic Jetstream on a firehose (`ws://…/xrpc/com.atproto.sync.subscribeRepos`). */
  static async v1(opts: { firehoseUrl: string }): Promise<JetstreamDaemon> {
    const binary = await goTool('jetstream-v1')
    const [port, metrics] = [await freePort(), await freePort()]
    const daemon = await Daemon.start({
      name: 'jetstream-v1',
      command: binary,
      args: (dir) => [
        '--ws-url', opts.firehoseUrl,
        '--listen-addr', `127.0.0.1:${port}`,
        '--metrics-listen-addr', `127.0.0.1:${metrics}`,
        '--data-dir', join(dir, 'data'),
        // Its default restarts the process after 15 s without events: tests are quieter than that.
        '--liveness-ttl', '24h',
      ],
      probe: () => answers(`http://127.0.0.1:${port}/`),
    })
    return new JetstreamDaemon(`ws://127.0.0.1:${port}/subscribe`, daemon)
  }

  /** Jetstream v2 on a relay (`http://127.0.0.1:PORT`). */
  static async v2(opts: { relayUrl: string; plcUrl: string; dir?: string; port?: number }): Promise<JetstreamDaemon> {
    const binary = await goTool('jetstream-v2')
    const plc = await PlcMultikeyProxy.start(opts.plcUrl)
    const [port, debug] = [opts.port ?? (await freePort()), await freePort()]
    try {
      const daemon = await Daemon.start({
        name: 'jetstream-v2',
        command: binary,
        dir: opts.dir,
        args: (dir) => [
          '--log-level', 'warn',
          'serve',
          '--addr', `127.0.0.1:${port}`,
          '--debug-addr', `127.0.0.1:${debug}`,
          '--relay-url', opts.relayUrl,
          '--plc-url', plc.url,
          '--data-dir', join(dir, 'data'),
          // Its bootstrap backfill cannot read a loopback PDS (its client refuses local hosts),
          // and /subscribe answers 503 until it is done: one placeholder repo skips it.
          '--backfill-repos', 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa',
        ],
        // /subscribe without an upgrade answers 426 once the stream is serving.
        probe: () => answers(`http://127.0.0.1:${port}/subscribe`, [426]),
        timeoutMs: 120_000,
      })
      return new JetstreamDaemon(`ws://127.0.0.1:${port}/subscribe`, daemon, plc, { relayUrl: opts.relayUrl, plcUrl: opts.plcUrl })
    } catch (err) {
      await plc.stop()
      throw err
    }
  }

  async stop(opts: { keepData?: boolean } = {}): Promise<void> {
    await this.#daemon.stop(opts)
    await this.#plc?.stop()
  }

  /** v2 only: stops it and starts it again on the same data and port (its blocks are sealed). */
  async restart(): Promise<JetstreamDaemon> {
    if (!this.#v2) throw new Error('restart() is for Jetstream v2')
    await this.stop({ keepData: true })
    return JetstreamDaemon.v2({ ...this.#v2, dir: this.#daemon.dir, port: Number(new URL(this.url).port) })
  }
}
