#!/usr/bin/env node
/**
 * Diagnostic (not a test, not a benchmark): the chain of packages that set a build's length,
 * from cmd/go's own trace. Build with `grid build -debug-trace=TRACE … PATTERNS` (or plain
 * `go build -debug-trace=TRACE`), then
 *
 *   node scripts/chain.js TRACE [--log DAEMON_LOG] [--json] [PATTERNS…]
 *
 * in the same directory and environment as the build (the imports come from `go list -deps
 * PATTERNS`, default `./...`). Walking back from the action that ended last to the import that
 * finished last gives the chain; each link *waited* from its last import's end to its own
 * start and *ran* from start to end (ms from cmd/go's start). Cgo steps and the cache check of
 * a package are cmd/go's `cgo …` and `build check cache` actions: they fall in the link's wait.
 * With `--log` (the requester's daemon log, `DEBUG=grid:scheduler`), each link says whether a
 * peer compiled it. docs/benchmarks/remote-timeline.md ("The critical chain") shows a reading.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

const USAGE = 'usage: node scripts/chain.js TRACE [--log DAEMON_LOG] [--json] [PATTERNS…]'

function parseArgs (argv) {
  const options = { trace: undefined, log: undefined, json: false, patterns: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--help' || a === '-h') { console.log(USAGE); process.exit(0) }
    if (a === '--json') options.json = true
    else if (a === '--log') {
      options.log = argv[++i]
      if (options.log === undefined) fail('--log needs a file')
    } else if (a.startsWith('-')) fail(`unknown flag ${a}`)
    else if (options.trace === undefined) options.trace = a
    else options.patterns.push(a)
  }
  if (options.trace === undefined) fail('no trace file given')
  if (options.patterns.length === 0) options.patterns.push('./...')
  return options
}

function fail (why) {
  console.error(`chain: ${why}\n${USAGE}`)
  process.exit(2)
}

/** Each `build P` action of the trace: P → { start, end } in ms from the trace's first event. */
function buildActions (events) {
  const t0 = events.reduce((min, e) => typeof e.ts === 'number' && e.ts < min ? e.ts : min, Infinity)
  const open = new Map()
  const actions = new Map()
  for (const e of events) {
    if (e.ph !== 'B' && e.ph !== 'E') continue
    const key = `${e.name}\u0000${e.tid}`
    if (e.ph === 'B') { (open.get(key) ?? open.set(key, []).get(key)).push(e.ts); continue }
    const start = open.get(key)?.pop()
    if (start === undefined) continue
    // `build P`, or `build P [V]` for a variant built for V (cmd/go's PGO builds, tests)
    const m = /^Executing action \(build (\S+(?: \[\S+\])?)\)$/.exec(e.name)
    if (m === null) continue
    actions.set(m[1], { start: (start - t0) / 1000, end: (e.ts - t0) / 1000 })
  }
  return actions
}

/** The chain that ended last, first link first: { pkg, ready, start, end }. */
function criticalChain (actions, imports) {
  let at
  for (const [pkg, a] of actions) if (at === undefined || a.end > actions.get(at).end) at = pkg
  const chain = []
  while (at !== undefined) {
    const a = actions.get(at)
    let last
    const [pkg, variant] = at.split(' ')
    for (const imported of imports.get(pkg) ?? []) {
      // a variant's imports are built in the same variant where there is one, and a main
      // package's in its own (`D [P]`, as for a PGO build)
      const own = `${imported} ${variant ?? `[${pkg}]`}`
      const dep = actions.has(own) ? own : imported
      if (actions.has(dep) && (last === undefined || actions.get(dep).end > actions.get(last).end)) last = dep
    }
    chain.push({ pkg: at, ready: last === undefined ? 0 : actions.get(last).end, start: a.start, end: a.end })
    at = last
  }
  return chain.reverse()
}

function main () {
  const options = parseArgs(process.argv.slice(2))
  let events
  try {
    events = JSON.parse(readFileSync(options.trace, 'utf8'))
  } catch (err) {
    fail(`cannot read the trace ${options.trace}: ${err.message}`)
  }
  if (!Array.isArray(events)) fail(`${options.trace} is not a trace of go build -debug-trace (a JSON array of events)`)
  const actions = buildActions(events)
  if (actions.size === 0) fail(`no \`build\` actions in ${options.trace}: was it written by go build -debug-trace?`)
  let listed
  try {
    listed = execFileSync('go', ['list', '-e', '-deps', '-f', '{{.ImportPath}}\t{{join .Imports " "}}', ...options.patterns], { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    fail(`go list -deps ${options.patterns.join(' ')} failed: ${(err.stderr ?? err.message).toString().trim()}`)
  }
  const imports = new Map()
  for (const line of listed.split('\n')) {
    if (line === '') continue
    const [pkg, deps = ''] = line.split('\t')
    imports.set(pkg, deps === '' ? [] : deps.split(' '))
  }
  const known = [...actions.keys()].filter(a => imports.has(a.split(' ')[0])).length
  if (known < actions.size / 2) fail(`only ${known} of the trace's ${actions.size} packages are in go list -deps ${options.patterns.join(' ')}: give the build's own packages, from its directory`)
  const remote = new Set()
  if (options.log !== undefined) {
    let log
    try {
      log = readFileSync(options.log, 'utf8')
    } catch (err) {
      fail(`cannot read the daemon log ${options.log}: ${err.message}`)
    }
    if (!log.includes('grid:scheduler')) console.error(`chain: no grid:scheduler lines in ${options.log}: was the daemon run with DEBUG=grid:scheduler? Every link shows as here.`)
    for (const m of log.matchAll(/grid:scheduler (\S+(?: \[\S+\])?): prepared in/g)) remote.add(m[1])
  }
  const chain = criticalChain(actions, imports).map(l => ({
    ...l, waited: l.start - l.ready, ran: l.end - l.start, ...(options.log === undefined ? {} : { where: remote.has(l.pkg) ? 'peer' : 'here' })
  }))
  const waited = chain.reduce((s, l) => s + l.waited, 0)
  const ran = chain.reduce((s, l) => s + l.ran, 0)
  if (options.json) {
    console.log(JSON.stringify({ chain, waitedMs: waited, ranMs: ran, endMs: chain.at(-1)?.end ?? 0 }, null, 2))
    return
  }
  const w = Math.max(...chain.map(l => l.pkg.length))
  const ms = (x) => x.toFixed(0).padStart(8)
  console.log(`${'package'.padEnd(w)}    ready    start      end   waited      ran${options.log === undefined ? '' : '  where'}`)
  for (const l of chain) console.log(`${l.pkg.padEnd(w)} ${ms(l.ready)} ${ms(l.start)} ${ms(l.end)} ${ms(l.waited)} ${ms(l.ran)}${l.where === undefined ? '' : `  ${l.where}`}`)
  console.log(`chain: ${chain.length} packages, ran ${(ran / 1000).toFixed(1)} s, waited ${(waited / 1000).toFixed(1)} s, last action ended at ${((chain.at(-1)?.end ?? 0) / 1000).toFixed(1)} s`)
}

main()
