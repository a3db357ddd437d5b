import { parseArgs } from 'node:util'
import { DEFAULTS, parseConfig, type Config } from '../../config.ts'
import { ConfigError } from '../../errors.ts'
import { createLogger } from '../../logger.ts'
import { App } from '../../app/app.ts'
import type { Command } from '../command.ts'

export const ingest: Command = {
  name: 'ingest',
  summary: 'run the indexer until SIGINT/SIGTERM; resumes from its saved cursor',
  usage: 'moodsync ingest [--source jetstream|firehose|tap] [--url URL]',
  async run({ argv, env, stderr, signal }) {
    const { values } = parseArgs({ args: argv, options: { source: { type: 'string' }, url: { type: 'string' } } })
    // Flags override the environment, and go through the same validation.
    const overrides: Record<string, string> = {}
    if (values.source !== undefined) overrides.MOODSYNC_SOURCE = values.source
    const source = values.source ?? env.MOODSYNC_SOURCE ?? DEFAULTS.MOODSYNC_SOURCE
    if (values.url !== undefined) overrides[source === 'firehose' ? 'FIREHOSE_URL' : source === 'tap' ? 'TAP_URL' : 'JETSTREAM_URL'] = values.url
    let config: Config
    try {
      config = parseConfig({ ...env, ...overrides })
    } catch (err) {
      if (err instanceof ConfigError && err.variable in overrides) {
        throw new ConfigError(err.variable === 'MOODSYNC_SOURCE' ? '--source' : '--url', err.message.slice(err.variable.length + 2))
      }
      throw err
    }
    const log = createLogger({ level: config.logLevel })
    const service = new App(config, { log }).ingestService()
    await service.start()
    stderr.write(`moodsync ingest: ${service.source.id} (${service.source.instance}); health ${service.ops.url}/healthz, metrics ${service.ops.url}/metrics\n`)
    await Promise.race([new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })), service.done])
    log.info('stopping: flushing the cursor')
    await service.destroy()
    const state = service.indexer.state
    stderr.write(`moodsync ingest: stopped cleanly at cursor ${state.savedCursor ?? 'none'}\n`)
    return 0
  },
}
