#!/usr/bin/env node
// From a checkout Node (>= 22) runs the TypeScript sources directly; an installed package
// (under node_modules, where Node will not strip types) runs the compiled dist/.
const installed = import.meta.url.includes('/node_modules/')
const { main } = await import(installed ? '../dist/cli/main.js' : '../src/cli/main.ts')
process.exitCode = await main(process.argv.slice(2))
