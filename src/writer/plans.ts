import type { MoodDoc } from '../store/collections.ts'

/** What `delete` would do to one mood (`moodsync delete --dry-run`). */
export interface DeletePlan {
  id: string
  rkey?: string
  did?: string
  state?: string
  /** Already deleted here, and its record's delete already queued or done: nothing to do. */
  alreadyDeleted: boolean
  /** Whether a delete of its ATProto record would be sent (the mood has one). */
  deletesRecord: boolean
}

/** What `forget` would erase (`moodsync forget --dry-run`). */
export interface ForgetPlan {
  user: string
  did: string | null
  /** Records of the collection in the repo, ours or another client's: all would be deleted. */
  records: number
  /** MongoDB documents of the user (or of the DID) that would be removed. */
  documents: number
}

/** The dry run of `Writer.delete`, decided by the same rules on the document as it is now. */
export function deletePlan(doc: MoodDoc): DeletePlan {
  const at = doc.atproto
  const hasRecord = Boolean(at?.did && at.rkey)
  const queued = Boolean(doc.deleted) && at?.op === 'delete'
  return {
    id: doc._id.toHexString(),
    ...(at?.rkey ? { rkey: at.rkey } : {}),
    ...(at?.did ? { did: at.did } : {}),
    ...(at?.state ? { state: at.state } : {}),
    alreadyDeleted: Boolean(doc.deleted) && (!hasRecord || queued),
    deletesRecord: hasRecord && !queued,
  }
}
