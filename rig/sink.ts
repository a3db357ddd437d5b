import { Writable } from 'node:stream'

/** A stream that keeps what is written to it: a command's stdout or stderr, in a test. */
export function sink(): { stream: Writable; text: () => string } {
  let text = ''
  return { stream: new Writable({ write: (chunk, _encoding, done) => ((text += chunk.toString()), done()) }), text: () => text }
}
