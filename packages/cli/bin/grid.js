#!/usr/bin/env node
// The polyfill must load before anything from libp2p does.
import '@grid/protocol/polyfill'
const { main } = await import('../dist/main.js')
const code = await main(process.argv.slice(2))
// main returns once everything it started is stopped and its output written. Leave now rather
// than when the event loop empties: libp2p's address manager keeps a 1 s timer past the
// node's stop, which kept every `grid build` that started an embedded mesh alive a second
// longer. The empty writes resolve once stdout and stderr are flushed.
await Promise.all([process.stdout, process.stderr].map(async s => await new Promise(resolve => s.write('', resolve))))
process.exit(code)
