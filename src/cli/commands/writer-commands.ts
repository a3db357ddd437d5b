import { parseArgs } from 'node:util'
import { App } from '../../app/app.ts'
import { parseConfig, requireSecret, type Env } from '../../config.ts'
import { createLogger } from '../../logger.ts'
import { CredentialStore } from '../../writer/credentials.ts'
import { SecretBox } from '../../writer/secret-box.ts'
import type { Writer, WriteResult } from '../../writer/writer.ts'
import { UsageError, type Command } from '../command.ts'
import { report } from '../output.ts'

/** Opens the app for one command and closes it after. */
export async function withWriter<T>(env: Env, stderr: NodeJS.WritableStream, work: (writer: Writer, app: App) => Promise<T>): Promise<T> {
  const config = parseConfig(env)
  return App.using(config, { log: createLogger({ level: config.logLevel, destination: stderr as never }) }, async (app) => {
    await app.start()
    return work(app.writer, app)
  })
}

const userOption = { user: { type: 'string' as const }, json: { type: 'boolean' as const, default: false } }
const dryRunOption = { 'dry-run': { type: 'boolean' as const, default: false } }

function requireUser(user: string | undefined): string {
  if (!user) throw new UsageError('--user SUB is required')
  return user
}

/**
 * One line for a stored change, saying what happens next. Exit 1 only for `failed` (stored here,
 * refused by the PDS, not retried by itself); a `pending` change is done as far as the caller is
 * concerned (the worker sends it), so running the command again would only make a second one.
 */
function outcome(verb: string, result: WriteResult, user: string): { line: string; code: number } {
  const head = `${verb} ${result.id}${result.rkey ? ` (rkey ${result.rkey})` : ''}: ${result.state}`
  const why = result.error ? ` (${result.error})` : ''
  switch (result.state) {
    case 'pending':
      return { line: `${head}${why}; stored in MongoDB, \`moodsync ingest\` sends it to ATProto later: do not run this again`, code: 0 }
    case 'failed':
      return { line: `${head}${why}; stored in MongoDB but refused by the PDS and not retried: fix the cause, then \`moodsync repair --user ${user}\``, code: 1 }
    case 'no-account':
      return { line: `${head} (the user has no ATProto account: MongoDB only)`, code: 0 }
    default:
      return { line: head, code: 0 }
  }
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
    const { line, code } = outcome('posted', result, user)
    report(stdout, values.json, result, () => line)
    return code
  },
}

export const del: Command = {
  name: 'delete',
  summary: 'delete one mood (by MongoDB id or rkey) on both sides; --dry-run shows what it would do',
  usage: 'moodsync delete --user SUB ID [--dry-run] [--json]',
  async run({ argv, env, stdout, stderr }) {
    const { values, positionals } = parseArgs({ args: argv, options: { ...userOption, ...dryRunOption }, allowPositionals: true })
    const user = requireUser(values.user)
    if (positionals.length !== 1) throw new UsageError('give exactly one mood id or rkey')
    const input = { user, id: positionals[0]! }
    if (values['dry-run']) {
      const plan = await withWriter(env, stderr, (writer) => writer.previewDelete(input))
      report(stdout, values.json, { dryRun: true, ...plan }, () =>
        plan.alreadyDeleted
          ? `dry run: ${plan.id} is already deleted; nothing would change`
          : `dry run: would delete ${plan.id} in MongoDB (soft delete)${plan.deletesRecord ? ` and its ATProto record ${plan.did}/${plan.rkey}` : ' (it has no ATProto record)'}; nothing changed`,
      )
      return 0
    }
    const result = await withWriter(env, stderr, (writer) => writer.delete(input))
    const { line, code } = outcome('deleted', result, user)
    report(stdout, values.json, result, () => line)
    return code
  },
}

export const forget: Command = {
  name: 'forget',
  summary: "erase all of a user's moods on both sides (account deletion); safe to run again; --dry-run counts",
  usage: 'moodsync forget --user SUB [--dry-run] [--json]',
  async run({ argv, env, stdout, stderr }) {
    const { values } = parseArgs({ args: argv, options: { ...userOption, ...dryRunOption } })
    const user = requireUser(values.user)
    if (values['dry-run']) {
      const plan = await withWriter(env, stderr, (writer) => writer.previewForget({ user }))
      report(stdout, values.json, { dryRun: true, ...plan }, () =>
        `dry run: forgetting ${user} would delete ${plan.records} ATProto records${plan.did ? ` from ${plan.did}` : ' (no ATProto account)'} and ${plan.documents} MongoDB documents; nothing changed`,
      )
      return 0
    }
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
    const config = parseConfig(env)
    const secret = requireSecret(config, 'seal credentials')
    const result = await withWriter(env, stderr, (_writer, app) => new CredentialStore(app.store, new SecretBox(secret, config.previousSecret)).sealAll())
    report(stdout, values.json, result, () =>
      `sealed ${result.sealed} passwords (${result.unchanged} already sealed, ${result.withoutPassword} users without one); the plain-text users.atproto.password fields can now be removed`,
    )
    return 0
  },
}
