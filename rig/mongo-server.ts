import { join } from 'node:path'
import { cachedBuild, goBuild, goVersionOf, RIG, run, type Log } from './build-cache.ts'
import { Daemon } from './daemon.ts'

/**
 * The MongoDB-wire servers the rig can start; neither is MongoDB (docs/TEST-RIG.md lists how
 * each deviates). `mongo-java` (mongo-java-server 1.47, memory backend) is the default: its
 * unique indexes, duplicate-key errors and bulk writes behave as MongoDB's, and it is three
 * orders of magnitude faster than FerretDB v1 on a (did, rkey) query. `ferretdb` (v1.24,
 * SQLite) is the second server the suite runs on (MOODSYNC_TEST_MONGO=ferretdb).
 */
export type MongoServerKind = 'mongo-java' | 'ferretdb'

export interface MongoServer {
  kind: MongoServerKind
  uri: string
  /** For reports: what it is. */
  label: string
  stop(): Promise<void>
}

const MONGO_LABELS: Record<MongoServerKind, string> = {
  'mongo-java': 'mongo-java-server 1.47.0 (memory backend, rig/mongo-java-server)',
  ferretdb: 'FerretDB v1.24 (SQLite backend, rig/ferretdb)',
}

/** MOODSYNC_TEST_MONGO, checked: the server the rig starts when no MONGODB_URI is given. */
export function testMongoKind(env: NodeJS.ProcessEnv = process.env): MongoServerKind {
  const kind = env.MOODSYNC_TEST_MONGO || 'mongo-java'
  if (kind !== 'mongo-java' && kind !== 'ferretdb') throw new Error(`MOODSYNC_TEST_MONGO must be mongo-java or ferretdb, not ${JSON.stringify(kind)}`)
  return kind
}

/** Builds (once, cached) what `kind` needs; returns the command line that starts it. */
export async function buildMongoServer(kind: MongoServerKind, log?: Log): Promise<string[]> {
  return kind === 'ferretdb' ? [await buildFerretDb(log)] : buildMongoJava(log)
}

export async function startMongoServer(kind: MongoServerKind = testMongoKind(), log?: Log): Promise<MongoServer> {
  const [command, ...prefix] = await buildMongoServer(kind, log)
  const daemon = await Daemon.start({
    name: kind,
    command: command!,
    args: (dir) => (kind === 'ferretdb' ? ['-dir', dir, '-listen', '127.0.0.1:0'] : [...prefix, '0']),
    readyLine: kind === 'ferretdb' ? /^FERRETDB_READY (\S+)/ : /^MONGO_JAVA_READY (\S+)/,
    // Both exit when stdin closes, so neither outlives a test run that is killed.
    stdinPipe: true,
    timeoutMs: 60_000,
  })
  return { kind, uri: daemon.ready, label: MONGO_LABELS[kind], stop: () => daemon.stop() }
}

const FERRETDB_DIR = join(RIG, 'ferretdb')

/** Our FerretDB wrapper (rig/ferretdb, Go), built once per source version. */
export async function buildFerretDb(log?: Log): Promise<string> {
  return cachedBuild(
    {
      name: 'ferretdb',
      inputs: ['go.mod', 'go.sum', 'main.go'].map((f) => join(FERRETDB_DIR, f)),
      extra: [await goVersionOf()],
      product: 'ferretdb',
      expect: '2 min',
      build: (out) => goBuild(FERRETDB_DIR, join(out, 'ferretdb'), ['.'], { CGO_ENABLED: '0' }),
    },
    log,
  )
}

const MONGO_JAVA_DIR = join(RIG, 'mongo-java-server')

/**
 * mongo-java-server: its jars from Maven Central (`mvn dependency:copy-dependencies` of
 * rig/mongo-java-server/pom.xml) and our Main.java compiled against them, cached together.
 * Returns `java … Main`; the port goes last.
 */
export async function buildMongoJava(log?: Log): Promise<string[]> {
  const { stderr: javaVersion } = await run('java', ['-version'])
  const classes = await cachedBuild(
    {
      name: 'mongo-java-server',
      inputs: ['pom.xml', 'Main.java'].map((f) => join(MONGO_JAVA_DIR, f)),
      extra: [javaVersion],
      product: 'classes/Main.class',
      expect: '30 s',
      build: async (out) => {
        await run('mvn', ['-q', '-B', '-f', join(MONGO_JAVA_DIR, 'pom.xml'), 'dependency:copy-dependencies', `-DoutputDirectory=${join(out, 'lib')}`], { maxBuffer: 16 * 1024 * 1024 })
        await run('javac', ['-d', join(out, 'classes'), '-cp', join(out, 'lib', '*'), join(MONGO_JAVA_DIR, 'Main.java')])
      },
    },
    log,
  )
  const dir = join(classes, '..', '..')
  // A small heap and the serial collector: the suite's data is small, and the default heap
  // (a quarter of the machine) would take 600 MB for nothing.
  return ['java', '-Xmx512m', '-XX:+UseSerialGC', '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn', '-cp', `${join(dir, 'lib', '*')}:${join(dir, 'classes')}`, 'Main']
}
