import net from 'node:net'

let patched = false

/**
 * The dev-env servers call `listen(port)`, which binds every interface. Test servers must bind
 * to loopback only, so listen calls that name no host get 127.0.0.1. Test processes only.
 */
export function bindToLoopback(): void {
  if (patched) return
  patched = true
  const original = net.Server.prototype.listen
  net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
    const [first, second] = args
    if (first === undefined || typeof first === 'function') {
      args.splice(0, 0, 0, '127.0.0.1')
    } else if ((typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) && typeof second !== 'string') {
      args.splice(1, 0, '127.0.0.1')
    } else if (typeof first === 'object' && first !== null && !('path' in first) && !('fd' in first) && !('handle' in first) && !('host' in first)) {
      args[0] = { ...first, host: '127.0.0.1' }
    }
    return (original as (...a: unknown[]) => net.Server).apply(this, args)
  } as typeof original
}
