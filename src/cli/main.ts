import { readFileSync } from 'node:fs'
import { ConfigError } from '../errors.ts'
import type { Command, CommandContext } from './command.ts'
import { UsageError } from './command.ts'
import { backfill } from './commands/backfill.ts'
import { codegen } from './commands/codegen.ts'
import { dedupe } from './commands/dedupe.ts'
import { migrate } from './commands/migrate.ts'
import { repair } from './commands/repair.ts'
import { status } from './commands/status.ts'
import { ingest } from './commands/ingest.ts'
import { del, forget, post, sealCredentials } from './commands/writer-commands.ts'
import { rotateSecret } from './commands/rotate-secret.ts'
import { setup } from './commands/setup.ts'
import { loadEnv } from './dotenv.ts'

const COMMANDS: Command[] = [ingest, backfill, status, repair, dedupe, migrate, post, del, forget, sealCredentials, rotateSecret, setup, codegen]

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
 * one command and returns its exit code. Nothing below here touches process.env or exits.
 */
export async function main(argv: string[], io: Partial<Pick<CommandContext, 'stdout' | 'stderr' | 'env'>> = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout
  const stderr = io.stderr ?? process.stderr
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    stdout.write(`${help()}\n`)
    return name === undefined ? 2 : 0
  }
  if (name === '--version' || name === '-v') {
    stdout.write(`moodsync ${version()}\n`)
    return 0
  }
  const command = COMMANDS.find((c) => c.name === name)
  if (!command) {
    stderr.write(`moodsync: unknown command "${name}"\n\n${help()}\n`)
    return 2
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    stdout.write(`usage: ${command.usage}\n${command.summary}\n`)
    return 0
  }

  const controller = new AbortController()
  const stop = () => controller.abort()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    const env = io.env ?? loadEnv(process.env)
    return await command.run({ argv: rest, env, stdout, stderr, signal: controller.signal })
  } catch (err) {
    if (err instanceof ConfigError) {
      stderr.write(`moodsync: configuration error: ${err.message}\n`)
      return 78 // EX_CONFIG
    }
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      stderr.write(`moodsync ${name}: ${(err as Error).message}\nusage: ${command.usage}\n`)
      return 2
    }
    stderr.write(`moodsync ${name} failed: ${(err as Error).message}\n`)
    return 1
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
}
