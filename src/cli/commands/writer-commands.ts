import { parseArgs } from 'node:util'
import { App } from '../../app/app.ts'
import { parseConfig, requireSecret, type Env } from '../../config.ts'
import { createLogger } from '../../logger.ts'
import { CredentialStore } from '../../writer/credentials.ts'
import { SecretBox } from '../../writer/secret-box.ts'
import type { Writer } from '../../writer/writer.ts'
import { UsageError, type Command } from '../command.ts'
import { report } from '../output.ts'

/** Opens the app for one command and closes it after. */
async function withWriter<T>(env: Env, stderr: NodeJS.WritableStream, work: (writer: Writer, app: App) => Promise<T>): Promise<T> {
  const config = parseConfig(env)
  return App.using(config, { log: createLogger({ level: config.logLevel, destination: stderr as never }) }, async (app) => {
    await app.start()
    return work(app.writer, app)
  })
}

const userOption = { user: { type: 'string' as const }, json: { type: 'boolean' as const, default: false } }

function requireUser(user: string | undefined): string {
  if (!user) throw new UsageError('--user SUB is required')
  return user
}

export const post: Command = {
  name: 'post',
  summary: 'post a mood as a platform user (MongoDB first, then ATProto; pending if the PDS is down)',
  usage: 'moodsync post --user SUB TEXT [--json]',
  async run({ argv, env, stdout, stderr }) {
    const { values, positionals } = parseArgs({ args: argv, options: userOption, allowPositionals: true })
    const user = requireUser(values.user)
    if (positionals.length === 0) throw new UsageError('the mood text is missing')
    const result = await withWriter(env, stderr, (writer) => writer.post({ user, text: positionals.join(' ') }))
    report(stdout, values.json, result, () => `posted ${result.id}${result.rkey ? ` (rkey ${result.rkey})` : ''}: ${result.state}`)
    return 0
  },
}

export const del: Command = {
  name: 'delete',
  summary: 'delete one mood (by MongoDB id or rkey) on both sides',
  usage: 'moodsync delete --user SUB ID [--json]',
  async run({ argv, env, stdout, stderr }) {
    const { values, positionals } = parseArgs({ args: argv, options: userOption, allowPositionals: true })
    const user = requireUser(values.user)
    if (positionals.length !== 1) throw new UsageError('give exactly one mood id or rkey')
    const result = await withWriter(env, stderr, (writer) => writer.delete({ user, id: positionals[0]! }))
    report(stdout, values.json, result, () => `deleted ${result.id}: ${result.state}`)
    return 0
  },
}

export const forget: Command = {
  name: 'forget',
  summary: "erase all of a user's moods on both sides (account deletion); safe to run again",
  usage: 'moodsync forget --user SUB [--json]',
  async run({ argv, env, stdout, stderr }) {
    const { values } = parseArgs({ args: argv, options: userOption })
    const user = requireUser(values.user)
    const result = await withWriter(env, stderr, (writer) => writer.forget({ user }))
    report(stdout, values.json, result, () => `forgot ${user}: ${result.recordsDeleted} ATProto records and ${result.documentsDeleted} MongoDB documents deleted`)
    return 0
  },
}

export const sealCredentials: Command = {
  name: 'seal-credentials',
  summary: 'encrypt users.atproto.password into moodsync_credentials (AES-256-GCM, MOODSYNC_SECRET)',
  usage: 'moodsync seal-credentials [--json]',
  async run({ argv, env, stdout, stderr }) {
    const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false } } })
    const secret = requireSecret(parseConfig(env), 'seal credentials')
    const result = await withWriter(env, stderr, (_writer, app) => new CredentialStore(app.store, new SecretBox(secret)).sealAll())
    report(stdout, values.json, result, () =>
      `sealed ${result.sealed} passwords (${result.unchanged} already sealed, ${result.withoutPassword} users without one); the plain-text users.atproto.password fields can now be removed`,
    )
    return 0
  },
}
