import { TID } from '@atproto/common-web'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MOOD_NSID, parseMood, toRecord } from '../../src/sync/mood.ts'
import { clientRef, TestNetwork, type TestAccount } from '../../rig/network.ts'

describe('a mood record on a real PDS', () => {
  let network: TestNetwork
  let alice: TestAccount
  beforeAll(async () => {
    network = await TestNetwork.start()
    alice = await network.createAccount('alice')
  })
  afterAll(() => network?.stop())

  it('written with @atproto/api, reads back and passes our validation', async () => {
    const mood = { mood: 'sunny with a chance of 🌈', when: new Date('2025-06-01T10:00:00.000Z'), ref: '6650f0c2a1b2c3d4e5f60718' }
    const rkey = TID.nextStr()
    const put = await alice.agent.com.atproto.repo.putRecord({ repo: alice.did, collection: MOOD_NSID, rkey, record: toRecord(mood) })
    expect(put.data.uri).toBe(`at://${alice.did}/${MOOD_NSID}/${rkey}`)

    const got = await alice.agent.com.atproto.repo.getRecord({ repo: alice.did, collection: MOOD_NSID, rkey })
    expect(got.data.cid).toBe(put.data.cid)
    expect(parseMood(got.data.value)).toEqual({ ok: true, value: mood })
  })

  it('the PDS stores what our validator rejects, so every reader must validate', async () => {
    // The PDS does not know our lexicon: an ill-typed record is accepted as "unknown".
    const created = await alice.agent.com.atproto.repo.createRecord({
      repo: alice.did,
      collection: MOOD_NSID,
      record: { $type: MOOD_NSID, ref: clientRef(), mood: 12345, when: 'last tuesday' },
    })
    expect(created.data.validationStatus).toBe('unknown')
    const got = await alice.agent.com.atproto.repo.getRecord({ repo: alice.did, collection: MOOD_NSID, rkey: created.data.uri.split('/').pop()! })
    const parsed = parseMood(got.data.value)
    expect(parsed.ok).toBe(false)
  })

  it('the test PDS listens on loopback only', async () => {
    const url = new URL(network.pdsUrl)
    const res = await fetch(`http://127.0.0.1:${url.port}/xrpc/_health`)
    expect(res.ok).toBe(true)
    const server = network.net.pds.server.server
    expect(server).toBeDefined()
    const address = server?.address()
    expect(typeof address === 'object' && address?.address).toBe('127.0.0.1')
  })
})
