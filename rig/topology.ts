import { JetstreamDaemon } from './jetstream.ts'
import type { TestNetwork } from './network.ts'
import { RelayServer } from './relay.ts'
import { TapDaemon } from './tap.ts'

export interface TopologyOptions {
  /** Classic Jetstream, on the PDS's own firehose. */
  jetstreamV1?: boolean
  /** Jetstream v2, on the relay. */
  jetstreamV2?: boolean
  /** Tap, on the relay, tracking the repos it is given (`tap.addRepos`). */
  tap?: boolean
}

/**
 * The production topology around the rig's PDS: PDS -> relay -> (firehose consumers,
 * Jetstream v2, Tap), and PDS -> Jetstream classic. Only what is asked for is started (the
 * relay always: it is what production reads); `stop()` stops it all, in reverse.
 */
interface Parts {
  relay: RelayServer
  jetstreamV1?: JetstreamDaemon
  jetstreamV2?: JetstreamDaemon
  tap?: TapDaemon
}

export class Topology {
  readonly relay: RelayServer
  readonly jetstreamV1?: JetstreamDaemon
  readonly jetstreamV2?: JetstreamDaemon
  readonly tap?: TapDaemon
  readonly #stops: (() => Promise<void>)[]

  private constructor(parts: Parts, stops: (() => Promise<void>)[]) {
    this.relay = parts.relay
    this.jetstreamV1 = parts.jetstreamV1
    this.jetstreamV2 = parts.jetstreamV2
    this.tap = parts.tap
    this.#stops = stops
  }

  static async start(network: TestNetwork, opts: TopologyOptions = {}): Promise<Topology> {
    const stops: (() => Promise<void>)[] = []
    try {
      const relay = await RelayServer.start({ pdsUrl: network.pdsUrl, plcUrl: network.plcUrl })
      stops.push(() => relay.stop())
      const parts: Parts = { relay }
      if (opts.jetstreamV1) {
        const j = (parts.jetstreamV1 = await JetstreamDaemon.v1({ firehoseUrl: network.firehoseUrl }))
        stops.push(() => j.stop())
      }
      if (opts.jetstreamV2) {
        const j = (parts.jetstreamV2 = await JetstreamDaemon.v2({ relayUrl: relay.url, plcUrl: network.plcUrl }))
        stops.push(() => j.stop())
      }
      if (opts.tap) {
        const t = (parts.tap = await TapDaemon.start({ relayUrl: relay.url, plcUrl: network.plcUrl }))
        stops.push(() => t.stop())
      }
      return new Topology(parts, stops)
    } catch (err) {
      for (const stop of stops.reverse()) await stop().catch(() => {})
      throw err
    }
  }

  async stop(): Promise<void> {
    for (const stop of [...this.#stops].reverse()) await stop().catch(() => {})
  }
}
