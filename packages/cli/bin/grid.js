#!/usr/bin/env node
// The polyfill must load before anything from libp2p does.
import '@grid/protocol/polyfill'
const { main } = await import('../dist/main.js')
process.exitCode = await main(process.argv.slice(2))
