import { parseArgs } from 'node:util'
import { findStale, generate } from '../../codegen/codegen.ts'
import type { Command } from '../command.ts'
import { report } from '../output.ts'

export const codegen: Command = {
  name: 'codegen',
  summary: 'regenerate src/lexicon/ from lexicons/; --check exits 1 when it is stale (in a checkout of moodsync)',
  usage: 'moodsync codegen [--check] [--lexicons DIR] [--out DIR] [--json]',
  async run({ argv, stdout, stderr }) {
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
    if (!values.check) {
      await generate(paths)
      report(stdout, values.json, { generated: paths.out }, () => `generated ${paths.out} from ${paths.lexicons}`)
      return 0
    }
    const stale = await findStale(paths)
    report(stdout, values.json, { upToDate: stale.length === 0, stale }, () =>
      stale.length === 0 ? `${paths.out} is up to date with ${paths.lexicons}` : '',
    )
    if (stale.length === 0) return 0
    stderr.write(`moodsync codegen: ${paths.out} is stale (${stale.join(', ')}); run "moodsync codegen" and commit the result\n`)
    return 1
  },
}
