import { parseArgs } from 'node:util'
import { App } from '../../app/app.ts'
import { parseConfig } from '../../config.ts'
import { createLogger } from '../../logger.ts'
import type { Command } from '../command.ts'
import { report } from '../output.ts'

export const setup: Command = {
  name: 'setup',
  summary: 'create moodsync\'s indexes and run storage migrations (fill DIDs into legacy moods)',
  usage: 'moodsync setup [--json]',
  async run({ argv, env, stdout, stderr }) {
    const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false } } })
    const config = parseConfig(env)
    const r = await App.using(config, { log: createLogger({ level: config.logLevel, destination: stderr as never }) }, async (app) => (await app.start()).fillDids)
    report(stdout, values.json, { fillDids: r }, () =>
      `indexes ready; legacy moods: ${r.filled} filled with their DID, ${r.noDid} whose user has no DID, ${r.conflicts} duplicate rkeys left for dedupe`,
    )
    return 0
  },
}
