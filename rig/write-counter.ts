/**
 * A fetch for the writer that counts, per change, every write request it sends to the PDS:
 * `put <rkey> <text>` (putRecord, or a create or update inside applyWrites) and
 * `delete <rkey>`. Tests read it to prove a change went out once, whoever sent it; reads and
 * logins pass through uncounted.
 */
export function writeCounter(): { fetch: typeof globalThis.fetch; sends: Map<string, number>; total: () => number } {
  const sends = new Map<string, number>()
  const fetch: typeof globalThis.fetch = (input, init) => {
    const method = new URL(input instanceof Request ? input.url : String(input)).pathname.split('/').pop()
    const body = typeof init?.body === 'string' ? (JSON.parse(init.body) as WriteBody) : undefined
    for (const key of body ? changesOf(method, body) : []) sends.set(key, (sends.get(key) ?? 0) + 1)
    return globalThis.fetch(input, init)
  }
  return { fetch, sends, total: () => [...sends.values()].reduce((a, b) => a + b, 0) }
}

interface WriteBody {
  rkey?: string
  record?: { mood?: string }
  writes?: { $type: string; rkey: string; value?: { mood?: string } }[]
}

function changesOf(method: string | undefined, body: WriteBody): string[] {
  if (method === 'com.atproto.repo.putRecord') return [`put ${body.rkey} ${body.record?.mood}`]
  if (method === 'com.atproto.repo.deleteRecord') return [`delete ${body.rkey}`]
  if (method === 'com.atproto.repo.applyWrites') return (body.writes ?? []).map((w) => (w.$type.endsWith('#delete') ? `delete ${w.rkey}` : `put ${w.rkey} ${w.value?.mood}`))
  return []
}
