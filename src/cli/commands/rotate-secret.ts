import { parseArgs } from 'node:util'
import { parseConfig, requireSecret } from '../../config.ts'
import { rotateSecret as rotate } from '../../writer/rotation.ts'
import { SecretBox } from '../../writer/secret-box.ts'
import type { Command } from '../command.ts'
import { report } from '../output.ts'
import { withWriter } from './writer-commands.ts'

export const rotateSecret: Command = {
  name: 'rotate-secret',
  summary: 're-seal stored credentials and sessions under MOODSYNC_SECRET, reading the old key from MOODSYNC_SECRET_PREVIOUS',
  usage: 'MOODSYNC_SECRET=new MOODSYNC_SECRET_PREVIOUS=old moodsync rotate-secret [--json]',
  async run({ argv, env, stdout, stderr }) {
    const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false } } })
    const config = parseConfig(env)
    const secret = requireSecret(config, 'rotate the key of stored credentials')
    // Without MOODSYNC_SECRET_PREVIOUS this only checks: everything should already be current.
    const result = await withWriter(env, stderr, (_writer, app) => rotate(app.store, new SecretBox(secret, config.previousSecret)))
    const { credentials: c, sessions: s } = result
    report(stdout, values.json, result, () =>
      [
        `credentials: ${c.resealed} re-sealed, ${c.current} already under MOODSYNC_SECRET, ${c.unreadable} unreadable with either key`,
        `sessions: ${s.resealed} re-sealed, ${s.current} already under MOODSYNC_SECRET, ${s.dropped} unreadable and dropped (those users log in again)`,
        ...(result.unreadableUsers.length > 0 ? [`unreadable credentials (left as they are; re-seal from users.atproto.password or reset): ${result.unreadableUsers.join(', ')}`] : []),
        ...(result.busy > 0 ? [`${result.busy} values changed while this ran: run it again`] : []),
        c.unreadable === 0 && result.busy === 0
          ? config.previousSecret === undefined
            ? 'every sealed value opens with MOODSYNC_SECRET'
            : 'done: once every process runs with the new MOODSYNC_SECRET, remove MOODSYNC_SECRET_PREVIOUS'
          : 'not done',
      ].join('\n'),
    )
    return c.unreadable > 0 || result.busy > 0 ? 1 : 0
  },
}
