import { encode } from '@atproto/lex-cbor'
import { IdResolver } from '@atproto/identity'
import { describe, expect, it } from 'vitest'
import { FirehoseSource } from '../../src/ingest/firehose.ts'

const source = new FirehoseSource({ url: 'ws://127.0.0.1:1/xrpc/com.atproto.sync.subscribeRepos', idResolver: new IdResolver() })
const frame = (header: unknown, body: unknown) => Buffer.concat([encode(header as never), encode(body as never)])
const did = 'did:plc:abcdefghijklmnopqrstuvwx'

describe('FirehoseSource.parseFrame', () => {
  it('malformed CBOR becomes invalid, never a throw', async () => {
    const [ev] = await source.parseFrame(new Uint8Array([0xff, 0x00, 0x13]))
    expect(ev).toMatchObject({ kind: 'invalid', reason: expect.stringMatching(/malformed CBOR/) })
  })

  it('a commit that touches only other collections is skipped without decoding its blocks', async () => {
    const body = { seq: 7, repo: did, rev: '3l3qo2vutsw2b', time: '2024-01-01T00:00:00Z', ops: [{ action: 'create', path: 'app.bsky.feed.post/3l3qo2vuowo2b', cid: null }], blocks: new Uint8Array([1, 2, 3]) }
    expect(await source.parseFrame(frame({ op: 1, t: '#commit' }, body))).toEqual([{ kind: 'skip', cursor: 7, emittedAt: Date.parse('2024-01-01T00:00:00Z') }])
  })

  it('a commit of ours whose proof cannot be verified is quarantined per op', async () => {
    const body = { seq: 8, repo: did, rev: 'r', time: '2024-01-01T00:00:00Z', ops: [{ action: 'delete', path: 'computer.aesthetic.mood/3l3qo2vuowo2b', cid: null }], blocks: new Uint8Array([1, 2, 3]) }
    const offline = new FirehoseSource({ url: 'ws://127.0.0.1:1/x', idResolver: { did: { resolveAtprotoKey: async () => 'did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme' } } as never })
    const [ev] = await offline.parseFrame(frame({ op: 1, t: '#commit' }, body))
    expect(ev).toMatchObject({ kind: 'invalid', cursor: 8, did, rkey: '3l3qo2vuowo2b', reason: expect.stringMatching(/verification failed/) })
  })

  it('account, identity, sync and OutdatedCursor info frames', async () => {
    expect(await source.parseFrame(frame({ op: 1, t: '#account' }, { seq: 9, did, active: false, status: 'deactivated', time: '2024-01-01T00:00:00Z' }))).toMatchObject([{ kind: 'account', cursor: 9, active: false, status: 'deactivated' }])
    expect(await source.parseFrame(frame({ op: 1, t: '#identity' }, { seq: 10, did, handle: 'a.test', time: '2024-01-01T00:00:00Z' }))).toMatchObject([{ kind: 'identity', cursor: 10, handle: 'a.test' }])
    expect(await source.parseFrame(frame({ op: 1, t: '#sync' }, { seq: 11, did, rev: 'r', blocks: new Uint8Array(), time: '2024-01-01T00:00:00Z' }))).toMatchObject([{ kind: 'resync', cursor: 11, did }])
    expect(await source.parseFrame(frame({ op: 1, t: '#info' }, { name: 'OutdatedCursor', message: 'Requested cursor exceeded limit' }))).toMatchObject([{ kind: 'gap', reason: expect.stringMatching(/OutdatedCursor/) }])
  })

  it('a frame missing required fields is invalid', async () => {
    expect(await source.parseFrame(frame({ op: 1, t: '#commit' }, { seq: 12 }))).toMatchObject([{ kind: 'invalid', cursor: 12, reason: expect.stringMatching(/lacks/) }])
  })
})
