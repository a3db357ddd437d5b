import { resolveTxt as dnsResolveTxt } from 'node:dns/promises'
import { createIdResolver } from '../atproto/identity.ts'
import { PdsError, XrpcClient } from '../atproto/xrpc.ts'
import { isLexiconDoc, LexiconContractError } from './check.ts'
import type { LexiconDoc } from './evolution.ts'

/** The collection a lexicon is published in; its record key is the NSID. */
export const SCHEMA_NSID = 'com.atproto.lexicon.schema'

/** node:dns/promises `resolveTxt`: each TXT record as its character strings. */
export type ResolveTxt = (hostname: string) => Promise<string[][]>

/**
 * The domain that holds an NSID's authority (ATProto lexicon resolution): the NSID without its
 * name segment, reversed. `computer.aesthetic.mood` -> `aesthetic.computer`.
 */
export function authorityDomain(nsid: string): string {
  const segments = nsid.split('.')
  if (segments.length < 3 || segments.some((s) => s === '')) throw new LexiconContractError(`"${nsid}" is not an NSID`)
  return segments.slice(0, -1).reverse().join('.')
}

/**
 * The DID that publishes an NSID's lexicon: the `did=` TXT record at `_lexicon.<authority>`.
 * Exactly one is required (none, or two that disagree, is an error; no parent-domain lookup).
 */
export async function resolveLexiconDid(nsid: string, resolveTxt: ResolveTxt = dnsResolveTxt): Promise<string> {
  const host = `_lexicon.${authorityDomain(nsid)}`
  let records: string[][]
  try {
    records = await resolveTxt(host)
  } catch (err) {
    throw new LexiconContractError(`no lexicon authority for ${nsid}: DNS TXT ${host}: ${(err as Error).message}`, { cause: err })
  }
  const dids = [...new Set(records.map((chunks) => chunks.join('')).filter((t) => t.startsWith('did=')).map((t) => t.slice(4).trim()))]
  if (dids.length === 0) throw new LexiconContractError(`no lexicon authority for ${nsid}: DNS TXT ${host} holds no "did=" record`)
  if (dids.length > 1) throw new LexiconContractError(`ambiguous lexicon authority for ${nsid}: DNS TXT ${host} names ${dids.join(', ')}`)
  if (!/^did:[a-z]+:[A-Za-z0-9._:%-]+$/.test(dids[0]!)) throw new LexiconContractError(`DNS TXT ${host}: "${dids[0]}" is not a DID`)
  return dids[0]!
}

export interface PublishedLexicon {
  did: string
  pds: string
  uri: string
  cid: string
  doc: LexiconDoc
}

export interface FetchOptions {
  /** The authority's DID; without it, found through DNS. */
  did?: string
  plcUrl: string
  resolveTxt?: ResolveTxt
  fetch?: typeof globalThis.fetch
}

/** The published `com.atproto.lexicon.schema` record of an NSID, from the authority's PDS. */
export async function fetchPublishedLexicon(nsid: string, opts: FetchOptions): Promise<PublishedLexicon> {
  const did = opts.did ?? (await resolveLexiconDid(nsid, opts.resolveTxt))
  let pds: string
  try {
    pds = (await createIdResolver(opts.plcUrl).did.resolveAtprotoData(did)).pds
  } catch (err) {
    throw new LexiconContractError(`cannot resolve ${did} to its PDS: ${(err as Error).message}`, { cause: err })
  }
  const found = await getSchemaRecord(new XrpcClient({ url: pds, fetch: opts.fetch }), did, nsid)
  if (found === undefined) throw new LexiconContractError(`${did} has published no ${SCHEMA_NSID} record for ${nsid} (at://${did}/${SCHEMA_NSID}/${nsid})`)
  return { did, pds, ...found }
}

/** The schema record in a repo, or undefined when there is none. */
async function getSchemaRecord(client: XrpcClient, did: string, nsid: string): Promise<{ uri: string; cid: string; doc: LexiconDoc } | undefined> {
  let res: { uri: string; cid: string; value: unknown }
  try {
    res = await client.call('com.atproto.repo.getRecord', { query: { repo: did, collection: SCHEMA_NSID, rkey: nsid } })
  } catch (err) {
    if (err instanceof PdsError && (err.error === 'RecordNotFound' || err.status === 404)) return undefined
    throw err
  }
  const doc = toDoc(res.value)
  if (doc === undefined || doc.id !== nsid) throw new LexiconContractError(`at://${did}/${SCHEMA_NSID}/${nsid} is not a lexicon document for ${nsid}`)
  return { uri: res.uri, cid: res.cid, doc }
}

/** A schema record's value as a lexicon document (its `$type` dropped). */
function toDoc(value: unknown): LexiconDoc | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const { $type: _type, ...doc } = value as Record<string, unknown>
  return isLexiconDoc(doc) ? doc : undefined
}

export interface AuthoritySession {
  client: XrpcClient
  did: string
  token: string
}

/** Logs in as the authority account (the password goes in the body only, never into an error). */
export async function loginAuthority(pdsUrl: string, identifier: string, password: string, fetch?: typeof globalThis.fetch): Promise<AuthoritySession> {
  const client = new XrpcClient({ url: pdsUrl, fetch })
  const session = await client.call<{ did: string; accessJwt: string }>('com.atproto.server.createSession', { body: { identifier, password } })
  return { client, did: session.did, token: session.accessJwt }
}

/** What the authority's own repo holds for an NSID now (undefined: not published yet). */
export async function currentPublication(session: AuthoritySession, nsid: string): Promise<LexiconDoc | undefined> {
  return (await getSchemaRecord(session.client, session.did, nsid))?.doc
}

/** Writes one lexicon document as the `com.atproto.lexicon.schema` record with rkey = its NSID. */
export async function putSchemaRecord(session: AuthoritySession, doc: LexiconDoc): Promise<{ uri: string; cid: string }> {
  return session.client.call('com.atproto.repo.putRecord', {
    token: session.token,
    body: { repo: session.did, collection: SCHEMA_NSID, rkey: doc.id, record: { $type: SCHEMA_NSID, ...doc } },
  })
}
