/** Prints a command's result: JSON for machines with --json, lines for people otherwise. */
export function report(out: NodeJS.WritableStream, json: boolean, value: unknown, human: () => string): void {
  out.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`)
}
