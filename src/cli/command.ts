import type { Env } from '../config.ts'
import { MoodsyncError } from '../errors.ts'

export interface CommandContext {
  /** Arguments after the command name. */
  argv: string[]
  env: Env
  stdout: NodeJS.WritableStream
  stderr: NodeJS.WritableStream
  /** Aborted on SIGINT/SIGTERM: long-running commands stop, flush and return. */
  signal: AbortSignal
}

export interface Command {
  name: string
  summary: string
  usage: string
  /** Resolves to the process exit code. */
  run(ctx: CommandContext): Promise<number>
}

/** Thrown for bad command-line usage; main prints it with the command's usage. */
export class UsageError extends MoodsyncError {
  override name = 'UsageError'
}
