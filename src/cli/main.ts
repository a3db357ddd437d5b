import { readFileSync } from 'node:fs'
import type { Command, CommandContext } from './command.ts'
import { backfill } from './commands/backfill.ts'
import { dedupe } from './commands/dedupe.ts'
import { migrate } from './commands/migrate.ts'
import { normalize } from './commands/normalize.ts'
import { repair } from './commands/repair.ts'
import { status } from './commands/status.ts'
import { ingest } from './commands/ingest.ts'
import { codegen } from './commands/codegen.ts'
import { lexicon } from './commands/lexicon.ts'
import { del, forget, post, sealCredentials } from './commands/writer-commands.ts'
import { rotateSecret } from './commands/rotate-secret.ts'
import { setup } from './commands/setup.ts'
import { loadEnv } from './dotenv.ts'
import { EXIT, exitForError } from './exit-codes.ts'

/**
 * Whether the development tools are installed (a checkout, not the installed package): codegen
 * needs the lexicon builder, a dev dependency, so only there is it listed, and only there does it run.
 */
export function hasDevTools(): boolean {
  try {
    import.meta.resolve('@atproto/lex-builder')
    return true
  } catch {
    return false
  }
}

const COMMANDS: Command[] = [ingest, backfill, status, repair, dedupe, migrate, normalize, post, del, forget, sealCredentials, rotateSecret, setup, lexicon, ...(hasDevTools() ? [codegen] : [])]

function help(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length))
  return [
    'moodsync: keeps aesthetic.computer moods in MongoDB in sync with ATProto (computer.aesthetic.mood)',
    '',
    'usage: moodsync <command> [options]      moodsync --version',
    '',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'moodsync <command> --help shows a command\'s options. Configuration comes from the environment',
    'or a .env file (see README.md).',
  ].join('\n')
}

/** From package.json, two folders up from here in `src/cli/` and in the built `dist/cli/` alike. */
function version(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
}

/**
 * The process edge: reads the environment, wires SIGINT/SIGTERM to an AbortSignal once, runs
 * one command and returns its exit code (the table is `exit-codes.ts`). Nothing below here
 * touches process.env or exits. `io.signal` is an embedder's own stop (a supervisor, a test):
 * it interrupts the command exactly as SIGINT does.
 */
export async function main(argv: string[], io: Partial<Pick<CommandContext, 'stdout' | 'stderr' | 'env' | 'signal'>> = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout
  const stderr = io.stderr ?? process.stderr
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    stdout.write(`${help()}\n`)
    return name === undefined ? EXIT.usage : EXIT.ok
  }
  if (name === '--version' || name === '-v') {
    stdout.write(`moodsync ${version()}\n`)
    return EXIT.ok
  }
  const command = COMMANDS.find((c) => c.name === name)
  if (!command) {
    stderr.write(`moodsync: unknown command "${name}"\n\n${help()}\n`)
    return EXIT.usage
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    stdout.write(`usage: ${command.usage}\n${command.summary}\n`)
    return EXIT.ok
  }

  const controller = new AbortController()
  const stop = () => controller.abort()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  const signal = io.signal ? AbortSignal.any([io.signal, controller.signal]) : controller.signal
  try {
    const env = io.env ?? loadEnv(process.env)
    return await command.run({ argv: rest, env, stdout, stderr, signal })
  } catch (err) {
    const message = (err as Error).message
    // Stopped while it could not finish (a wait for MongoDB, a listing cut off): the operator
    // asked for the stop, so that is the answer, with what failed on the way out.
    if (signal.aborted) {
      stderr.write(`moodsync ${name}: interrupted before it could report (${message}); run it again\n`)
      return EXIT.interrupted
    }
    const code = exitForError(err)
    if (code === EXIT.config) stderr.write(`moodsync: configuration error: ${message}\n`)
    else if (code === EXIT.usage) stderr.write(`moodsync ${name}: ${message}\nusage: ${command.usage}\n`)
    else if (code === EXIT.unavailable) stderr.write(`moodsync ${name}: MongoDB unavailable: ${message}\n`)
    else if (code === EXIT.software) stderr.write(`moodsync ${name} failed (unexpected error, please report): ${(err as Error).stack ?? message}\n`)
    else stderr.write(`moodsync ${name} failed: ${message}\n`)
    return code
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
}
