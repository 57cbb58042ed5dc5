#!/usr/bin/env node
// The polyfill must load before anything from libp2p does.
import '@grid/protocol/polyfill'
const { main, dieLikeGo } = await import('../dist/main.js')
const code = await main(process.argv.slice(2))
// main returns once everything it started is stopped and its output written. Leave now rather
// than when the event loop empties: libp2p's address manager keeps a 1 s timer past the
// node's stop, which kept every `grid build` that started an embedded mesh alive a second
// longer. The empty writes resolve once stdout and stderr are flushed.
await Promise.all([process.stdout, process.stderr].map(async s => await new Promise(resolve => s.write('', resolve))))
// go died of Ctrl-C or a SIGTERM: so does grid, as a shell (or a supervisor) expects; the exit
// status code holds (128 + the signal) is the fallback should the signal not end us at once
if (dieLikeGo()) await new Promise(resolve => setTimeout(resolve, 1000))
process.exit(code)
