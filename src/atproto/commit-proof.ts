import type { Cid } from '@atproto/lex-data'
import { def, formatDataKey, MemoryBlockstore, MST, readCarWithRoot, type BlockMap } from '@atproto/repo'
import { MoodsyncError } from '../errors.ts'
import { verifyCommitSignature } from './signature.ts'

/** A commit's CAR failed a check: bad blocks, another repo's commit, a bad signature, an unproven op. */
export class CommitProofError extends MoodsyncError {
  override name = 'CommitProofError'
  /** A signature that fails may mean a rotated key: worth one fresh look-up of the DID. */
  readonly badSignature: boolean
  constructor(message: string, opts: { badSignature?: boolean; cause?: unknown } = {}) {
    super(message, { cause: opts.cause })
    this.badSignature = opts.badSignature ?? false
  }
}

/** An op the commit claims: the record's CID, or null for a delete. */
export interface Claim {
  collection: string
  rkey: string
  cid: Cid | null
}

export interface ProvenCommit {
  rev: string
  /** The MST root after the commit: the next commit's `prevData` (sync 1.1). */
  data: Cid
  /** Every block of the CAR, each checked against its CID. */
  blocks: BlockMap
}

/**
 * What `@atproto/repo`'s `verifyProofs` checks, with the signature checked natively
 * (signature.ts): every block's CID, the commit's DID and signature, and each claim against
 * the MST (a create or update points at that CID, a delete at nothing).
 */
export async function proveCommit(car: Uint8Array, did: string, didKey: string, claims: readonly Claim[]): Promise<ProvenCommit> {
  let root: Cid
  let blocks: BlockMap
  try {
    ;({ root, blocks } = await readCarWithRoot(car))
  } catch (err) {
    throw new CommitProofError(`unreadable commit CAR: ${(err as Error).message}`, { cause: err })
  }
  const store = new MemoryBlockstore(blocks)
  let commit
  try {
    commit = await store.readObj(root, def.commit)
  } catch (err) {
    throw new CommitProofError(`not a v3 commit: ${(err as Error).message}`, { cause: err })
  }
  if (commit.did !== did) throw new CommitProofError(`the commit is ${commit.did}'s, not ${did}'s`)
  if (!verifyCommitSignature(commit, didKey)) throw new CommitProofError(`invalid signature on commit ${root.toString()}`, { badSignature: true })
  const mst = MST.load(store, commit.data)
  for (const claim of claims) {
    const found = await mst.get(formatDataKey(claim.collection, claim.rkey))
    const proven = claim.cid === null ? found === null : found?.equals(claim.cid) === true
    if (!proven) throw new CommitProofError(`${claim.collection}/${claim.rkey}: the commit's tree does not prove the op`)
  }
  return { rev: commit.rev, data: commit.data, blocks }
}
