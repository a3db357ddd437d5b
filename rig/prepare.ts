// Builds (once, cached under .cache/) everything the rig starts: the MongoDB-wire server the
// suite will use and the real network programs. Run by scripts/test.sh before vitest, so a
// first run on a cold machine prints its progress instead of a test timing out.
import { buildMongoServer, testMongoKind } from './mongo-server.ts'
import { GO_TOOLS, goTools, type GoTool } from './tools.ts'

export async function prepareRig(log: (line: string) => void, opts: { mongo?: boolean; tools?: readonly GoTool[] } = {}): Promise<void> {
  if (opts.mongo ?? !process.env.MONGODB_URI) await buildMongoServer(testMongoKind(), log)
  await goTools(opts.tools ?? (Object.keys(GO_TOOLS) as GoTool[]), log)
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const started = Date.now()
  await prepareRig((line) => console.log(line))
  console.log(`rig ready in ${((Date.now() - started) / 1000).toFixed(1)} s`)
}
