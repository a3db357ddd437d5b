import { join } from 'node:path'
import { cachedBuild, goBuild, goVersionOf, RIG, type Log } from './build-cache.ts'

/**
 * The real network programs the rig runs, each built from a pinned version by a wrapper Go
 * module under rig/tools/<module>/ (a `tool` directive and a committed go.sum: the module proxy
 * here refuses version lists, so `go install pkg@version` cannot work). docs/TEST-RIG.md says
 * what each stands for in production.
 */
export const GO_TOOLS = {
  relay: { module: 'indigo', pkg: 'github.com/bluesky-social/indigo/cmd/relay', expect: '1.5 min' },
  tap: { module: 'indigo', pkg: 'github.com/bluesky-social/indigo/cmd/tap', expect: '3 min alone, seconds after the relay' },
  collectiondir: { module: 'indigo', pkg: 'github.com/bluesky-social/indigo/cmd/collectiondir', expect: '1.5 min, seconds after the relay' },
  goat: { module: 'goat', pkg: 'github.com/bluesky-social/indigo/cmd/goat', expect: '1 min' },
  'jetstream-v1': { module: 'jetstream-v1', pkg: 'github.com/bluesky-social/jetstream/cmd/jetstream', expect: '2 min' },
  'jetstream-v2': { module: 'jetstream-v2', pkg: 'github.com/bluesky-social/jetstream/cmd/jetstream', expect: '4 min' },
} as const

export type GoTool = keyof typeof GO_TOOLS

/** The binary of `tool`, built on first use and cached on its wrapper's go.mod and go.sum. */
export async function goTool(tool: GoTool, log?: Log): Promise<string> {
  const spec = GO_TOOLS[tool]
  const dir = join(RIG, 'tools', spec.module)
  return cachedBuild(
    {
      name: `tools/${tool}`,
      inputs: [join(dir, 'go.mod'), join(dir, 'go.sum')],
      extra: [await goVersionOf(), spec.pkg],
      product: tool,
      expect: spec.expect,
      // cgo stays on: the relay, Tap and Jetstream store in SQLite through it.
      build: (out) => goBuild(dir, join(out, tool), [spec.pkg]),
    },
    log,
  )
}

/** Builds several tools one after another (each `go build` already uses every core). */
export async function goTools(tools: readonly GoTool[], log?: Log): Promise<Record<GoTool, string>> {
  const paths = {} as Record<GoTool, string>
  for (const tool of tools) paths[tool] = await goTool(tool, log)
  return paths
}
