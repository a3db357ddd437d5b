import type { TestProject } from 'vitest/node'
import { startMongoServer, testMongoKind } from './mongo-server.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    mongoUri: string
    mongoKind: string
  }
}

/**
 * One MongoDB-wire server for the whole run: a real MongoDB when MONGODB_URI is set,
 * otherwise the rig's (mongo-java-server by default, FerretDB with MOODSYNC_TEST_MONGO=ferretdb)
 * on a free loopback port. Each test file gets its own database.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.MONGODB_URI
  if (external) {
    project.provide('mongoUri', external)
    project.provide('mongoKind', 'mongodb')
    return async () => {}
  }
  const server = await startMongoServer(testMongoKind(), (line) => console.log(line))
  project.provide('mongoUri', server.uri)
  project.provide('mongoKind', server.kind)
  return () => server.stop()
}
