/**
 * ATProto's lexicon evolution rules, as a comparison of two lexicon documents (pure): every
 * record valid under the published document must stay valid under the local one (old data), and
 * every record valid under the local one must be valid under the published one (new data read
 * by old readers). So: no new required field, no removed or renamed field, no changed type, and
 * no changed bound, in either direction (tightening breaks old data, loosening breaks old
 * readers). Descriptions and `knownValues` (open, informative) may change; new optional fields
 * and new definitions may be added.
 */

export type LexiconDoc = { lexicon: number; id: string; defs: Record<string, unknown>; [key: string]: unknown }

export type BreakKind =
  | 'removed-def'
  | 'changed-id'
  | 'new-required'
  | 'removed-field'
  | 'renamed-field'
  | 'changed-type'
  | 'now-required'
  | 'now-optional'
  | 'tightened'
  | 'loosened'
  | 'changed'

export interface RuleBreak {
  nsid: string
  /** Where, from the document's `defs`: `main.record.properties.mood.maxLength`. */
  path: string
  kind: BreakKind
  /** One line for a person. */
  message: string
}

/** Keys that do not constrain a value: they may change freely. */
const INFORMATIVE = new Set(['description', 'knownValues'])
/** Keys compared by structure rather than as one value. */
const STRUCTURAL = new Set(['type', 'properties', 'required', 'nullable', 'items', 'record', 'refs', 'closed', 'parameters', 'input', 'output', 'message', 'errors'])
/** Bounds where a larger value is looser (and a smaller one tighter). */
const UPPER = new Set(['maxLength', 'maxGraphemes', 'maximum', 'maxSize'])
/** Bounds where a smaller value is looser. */
const LOWER = new Set(['minLength', 'minGraphemes', 'minimum'])

/** Every rule the local document breaks against the published one (empty: compatible both ways). */
export function compareLexicons(published: LexiconDoc, local: LexiconDoc): RuleBreak[] {
  const nsid = published.id
  const out: RuleBreak[] = []
  const add = (path: string, kind: BreakKind, message: string) => out.push({ nsid, path, kind, message })
  if (local.id !== published.id) add('id', 'changed-id', `the document's id changed from ${published.id} to ${local.id}`)
  for (const [name, def] of Object.entries(published.defs)) {
    if (!(name in local.defs)) add(name, 'removed-def', `the definition ${nsid}#${name} was removed`)
    else compareNode(def, local.defs[name], name, add)
  }
  return out
}

type Add = (path: string, kind: BreakKind, message: string) => void

function compareNode(pub: unknown, loc: unknown, path: string, add: Add): void {
  if (!isObject(pub) || !isObject(loc)) {
    if (!same(pub, loc)) add(path, 'changed', `${path} changed from ${show(pub)} to ${show(loc)}`)
    return
  }
  if (pub.type !== loc.type) {
    add(path, 'changed-type', `${path} changed type from ${show(pub.type)} to ${show(loc.type)}`)
    return
  }
  // Constraints: any change of a bound breaks one direction; name which.
  const keys = new Set([...Object.keys(pub), ...Object.keys(loc)])
  for (const key of keys) {
    if (INFORMATIVE.has(key) || STRUCTURAL.has(key)) continue
    if (same(pub[key], loc[key])) continue
    add(`${path}.${key}`, boundKind(key, pub[key], loc[key]), `${path}.${key} changed from ${show(pub[key])} to ${show(loc[key])} (${describe(boundKind(key, pub[key], loc[key]))})`)
  }
  if (pub.type === 'object' || pub.type === 'params') compareObject(pub, loc, path, add)
  if ('items' in pub || 'items' in loc) compareNode(pub.items, loc.items, `${path}.items`, add)
  if ('record' in pub || 'record' in loc) compareNode(pub.record, loc.record, `${path}.record`, add)
  for (const key of ['parameters', 'input', 'output', 'message'] as const) {
    if (key in pub || key in loc) compareNode(pub[key], loc[key], `${path}.${key}`, add)
  }
  if (pub.type === 'union') compareUnion(pub, loc, path, add)
}

function compareObject(pub: Record<string, unknown>, loc: Record<string, unknown>, path: string, add: Add): void {
  const pubProps = (isObject(pub.properties) ? pub.properties : {}) as Record<string, unknown>
  const locProps = (isObject(loc.properties) ? loc.properties : {}) as Record<string, unknown>
  const pubRequired = new Set(strings(pub.required))
  const locRequired = new Set(strings(loc.required))
  const pubNullable = new Set(strings(pub.nullable))
  const locNullable = new Set(strings(loc.nullable))
  const removed = Object.keys(pubProps).filter((name) => !(name in locProps))
  const added = Object.keys(locProps).filter((name) => !(name in pubProps))
  for (const name of removed) {
    // A removed field with an added one of the same definition is a rename.
    const twin = added.find((other) => same(withoutInformative(pubProps[name]), withoutInformative(locProps[other])))
    if (twin !== undefined) add(`${path}.properties.${name}`, 'renamed-field', `${path}.properties.${name} was renamed to ${twin}`)
    else add(`${path}.properties.${name}`, 'removed-field', `${path}.properties.${name} was removed (keep it, marked deprecated)`)
  }
  for (const name of added) {
    if (locRequired.has(name)) add(`${path}.properties.${name}`, 'new-required', `${path}.properties.${name} is new and required (a new field must be optional)`)
  }
  for (const name of Object.keys(pubProps)) {
    if (!(name in locProps)) continue
    const at = `${path}.properties.${name}`
    if (!pubRequired.has(name) && locRequired.has(name)) add(at, 'now-required', `${at} became required (older records may lack it)`)
    if (pubRequired.has(name) && !locRequired.has(name)) add(at, 'now-optional', `${at} became optional (readers of the published schema require it)`)
    if (pubNullable.has(name) && !locNullable.has(name)) add(`${at}.nullable`, 'tightened', `${at} is no longer nullable (older records may hold null)`)
    if (!pubNullable.has(name) && locNullable.has(name)) add(`${at}.nullable`, 'loosened', `${at} became nullable (readers of the published schema refuse null)`)
    compareNode(pubProps[name], locProps[name], at, add)
  }
}

function compareUnion(pub: Record<string, unknown>, loc: Record<string, unknown>, path: string, add: Add): void {
  const pubRefs = new Set(strings(pub.refs))
  const locRefs = new Set(strings(loc.refs))
  const closed = pub.closed === true
  if (closed !== (loc.closed === true)) add(`${path}.closed`, closed ? 'loosened' : 'tightened', `${path}.closed changed from ${closed} to ${!closed}`)
  for (const ref of pubRefs) if (!locRefs.has(ref)) add(`${path}.refs`, 'tightened', `${path} no longer accepts ${ref}`)
  for (const ref of locRefs) if (!pubRefs.has(ref) && closed) add(`${path}.refs`, 'loosened', `${path} (closed) now accepts ${ref}`)
}

function boundKind(key: string, pub: unknown, loc: unknown): BreakKind {
  // A record's key type: `any` admits every other.
  if (key === 'key') return loc === 'any' ? 'loosened' : pub === 'any' ? 'tightened' : 'changed'
  if (typeof pub === 'number' && typeof loc === 'number') {
    if (UPPER.has(key)) return loc < pub ? 'tightened' : 'loosened'
    if (LOWER.has(key)) return loc > pub ? 'tightened' : 'loosened'
  }
  if (pub === undefined && loc !== undefined) return key === 'default' ? 'changed' : 'tightened'
  if (pub !== undefined && loc === undefined) return key === 'default' ? 'changed' : 'loosened'
  if (Array.isArray(pub) && Array.isArray(loc) && key === 'enum') {
    const added = loc.some((v) => !pub.some((p) => same(p, v)))
    const removed = pub.some((p) => !loc.some((v) => same(p, v)))
    if (added && !removed) return 'loosened'
    if (removed && !added) return 'tightened'
  }
  return 'changed'
}

function describe(kind: BreakKind): string {
  if (kind === 'tightened') return 'tightened: records valid under the published schema may be refused'
  if (kind === 'loosened') return 'loosened: records valid here may be refused by readers of the published schema'
  return 'a changed constraint breaks one direction or both'
}

function withoutInformative(node: unknown): unknown {
  if (!isObject(node)) return node
  return Object.fromEntries(Object.entries(node).filter(([k]) => !INFORMATIVE.has(k)))
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []
}

/** Deep equality of JSON values (object key order ignored). */
export function same(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => same(v, b[i]))
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a)
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && same(a[k], b[k]))
  }
  return false
}

function show(value: unknown): string {
  return value === undefined ? 'absent' : JSON.stringify(value)
}
