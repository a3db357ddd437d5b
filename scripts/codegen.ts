// Regenerates src/lexicon/ from lexicons/ (a development tool, not a command of the installed
// package: it needs @atproto/lex-builder, a dev dependency). `--check` exits 1 when stale.
//
//   npm run codegen            node scripts/codegen.ts [--check] [--lexicons DIR] [--out DIR] [--json]
import { parseArgs } from 'node:util'
import { findStale, generate } from '../src/codegen/codegen.ts'

export async function codegen(argv: string[], io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream }): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      check: { type: 'boolean', default: false },
      lexicons: { type: 'string', default: 'lexicons' },
      out: { type: 'string', default: 'src/lexicon' },
      json: { type: 'boolean', default: false },
    },
  })
  const paths = { lexicons: values.lexicons, out: values.out }
  const say = (value: unknown, human: string) => io.stdout.write(values.json ? `${JSON.stringify(value)}\n` : human ? `${human}\n` : '')
  if (!values.check) {
    await generate(paths)
    say({ generated: paths.out }, `generated ${paths.out} from ${paths.lexicons}`)
    return 0
  }
  const stale = await findStale(paths)
  say({ upToDate: stale.length === 0, stale }, stale.length === 0 ? `${paths.out} is up to date with ${paths.lexicons}` : '')
  if (stale.length === 0) return 0
  io.stderr.write(`codegen: ${paths.out} is stale (${stale.join(', ')}); run "npm run codegen" and commit the result\n`)
  return 1
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.exitCode = await codegen(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr })
}
