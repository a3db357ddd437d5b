import type { TestProject } from 'vitest/node'
import { FerretDbServer } from './ferretdb.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    mongoUri: string
  }
}

/**
 * One MongoDB-wire server for the whole run: a real MongoDB when MONGODB_URI is set,
 * otherwise our FerretDB build on a free loopback port. Each test file gets its own database.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.MONGODB_URI
  if (external) {
    project.provide('mongoUri', external)
    return async () => {}
  }
  const server = await FerretDbServer.start()
  project.provide('mongoUri', server.uri)
  return () => server.stop()
}
