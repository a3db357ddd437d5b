// Builds (once, cached under .cache/) what the rig starts: the MongoDB-wire server the suite
// will use and the real network programs. `npm test` runs it while npm installs and again
// before vitest (then it only waits for, or finds, what is built), so a first run on a cold
// machine prints its progress instead of a test timing out.
//
//   node rig/prepare.ts [--only mongo,relay,goat,...]
//
// It imports Node's built-ins only, so it can run before `npm ci`.
import { parseArgs } from 'node:util'
import { MissingToolError } from './build-cache.ts'
import { buildMongoServer, testMongoKind } from './mongo-server.ts'
import { GO_TOOLS, goTools, type GoTool } from './tools.ts'

export async function prepareRig(log: (line: string) => void, only?: readonly string[]): Promise<void> {
  const wanted = (name: string) => only === undefined || only.includes(name)
  for (const name of only ?? []) if (name !== 'mongo' && !(name in GO_TOOLS)) throw new Error(`rig/prepare.ts: unknown part ${JSON.stringify(name)}`)
  if (wanted('mongo') && !process.env.MONGODB_URI) await buildMongoServer(testMongoKind(), log)
  await goTools((Object.keys(GO_TOOLS) as GoTool[]).filter(wanted), log)
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { only: { type: 'string' } } })
  const started = Date.now()
  try {
    await prepareRig((line) => console.log(line), values.only?.split(',').filter(Boolean))
    console.log(`rig ready in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  } catch (err) {
    // A missing Go or JDK is one line to act on, not a stack trace.
    console.error(err instanceof MissingToolError ? `moodsync: ${err.message}` : err)
    process.exitCode = 1
  }
}
