// `grid build` / `grid test` end to end, as a user runs them, against plain `go build -trimpath`.
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { describe, it } from 'node:test'
import { FIXTURES, GOMOD, GRID_BIN, goBuild, grid, nestedGoModule, referenceGocache, run, sameFiles, startDaemon, status, summary, tempDir, world, type RunResult, type World } from '../helpers/index.js'

describe('grid build of the fixture module', () => {
  it('is byte-identical to go build -trimpath, and a rebuild after go clean -cache runs zero compiles', async (t) => {
    const w = await world(t)
    const ref = join(w.dir, 'ref')
    const out1 = join(w.dir, 'out1')
    const out2 = join(w.dir, 'out2')
    const plain = await goBuild(['-o', ref + '/', './...'])
    assert.equal(plain.code, 0, plain.stderr)

    await startDaemon(t, w)
    // --graph: no peer here, so the graph is listed only when asked for
    const cold = await grid(w, ['--json', '--graph', 'build', '-o', out1 + '/', './...'])
    assert.equal(cold.code, 0, cold.stderr)
    const s1 = summary(cold)
    assert.ok(s1.compiles.local > 10, `cold build compiled ${s1.compiles.local} packages`)
    // No peer to ask: the node handed the helper its absent filter, and the helper answered
    // every miss itself. The node counts them all the same.
    assert.ok(s1.cache.misses > 10 && s1.cache.absent === s1.cache.misses, `misses answered by the helper: ${JSON.stringify(s1.cache)}`)
    assert.equal((await status(w)).counters.misses, s1.cache.misses, "the node's counters")
    const cp = s1.compiles.criticalPath
    assert.ok(cp.ms > 0 && cp.totalMs >= cp.ms, `the critical path through the listed graph: ${JSON.stringify(cp)}`)
    assert.equal(s1.compiles.failed, 0, 'every compile the shim became wrote its -o, where the node looks for it')
    assert.deepEqual(s1.compiles.fallbacks, {})
    assert.deepEqual(await sameFiles(out1, ref), ['alpha', 'beta'])
    const compilesBefore = (await status(w)).counters.compiles

    await w.freshGoCache() // what `go clean -cache` leaves behind
    const warm = await grid(w, ['--json', 'build', '-o', out2 + '/', './...'])
    assert.equal(warm.code, 0, warm.stderr)
    const s2 = summary(warm)
    assert.equal(s2.compiles.local, 0, 'warm rebuild compiled nothing')
    assert.deepEqual(s2.compiles.fallbacks, {})
    assert.ok(s2.cache.hits > 50, `warm rebuild had ${s2.cache.hits} hits`)
    assert.equal((await status(w)).counters.compiles, compilesBefore, 'the node ran no compile')
    await sameFiles(out2, ref)
    // another command (-o differs) has no list of its own: the directory's newest serves
    assert.equal(s2.cache.recalled, s2.cache.hits, `the first build's lookups recalled: ${JSON.stringify(s2.cache)}`)

    // The same command again: the node hands the helper what it looked up last time, and the
    // helper answers those gets itself. The counts are the same as if the node had.
    await w.freshGoCache()
    const hitsBefore = (await status(w)).counters.hits
    const again = await grid(w, ['--json', 'build', '-o', out2 + '/', './...'])
    assert.equal(again.code, 0, again.stderr)
    const s3 = summary(again)
    assert.equal(s3.compiles.local, 0)
    assert.equal(s3.cache.recalled, s3.cache.hits, `every hit recalled: ${JSON.stringify(s3.cache)}`)
    assert.ok(s3.cache.hits > 50 && s3.cache.hits === s3.actions, `every lookup hit: ${s3.actions} lookups`)
    assert.equal((await status(w)).counters.hits - hitsBefore, s3.cache.hits, "the node's counters")
    await sameFiles(out2, ref)
  })

  it('--toolexec auto with no peer: go runs its own tools, the output is identical and the cache is the same', async (t) => {
    const w = await world(t)
    const ref = join(w.dir, 'ref')
    const out1 = join(w.dir, 'out1')
    const out2 = join(w.dir, 'out2')
    assert.equal((await goBuild(['-o', ref + '/', './...'])).code, 0)
    await startDaemon(t, w)
    const direct = await grid(w, ['--json', '--toolexec', 'auto', 'build', '-o', out1 + '/', './...'])
    assert.equal(direct.code, 0, direct.stderr)
    const s1 = summary(direct)
    assert.equal(s1.toolexec, false)
    assert.ok(!s1.command.some((a: string) => a.startsWith('-toolexec')), s1.command.join(' '))
    assert.ok(s1.cache.puts > 50 && s1.cache.hits === 0, `go stored its outputs in the grid cache: ${JSON.stringify(s1.cache)}`)
    assert.equal((await status(w)).counters.compiles, 0, 'no compile went through the node')
    assert.deepEqual(await sameFiles(out1, ref), ['alpha', 'beta'])
    // without --json the summary line says who compiled
    const line = await grid(w, ['--toolexec', 'auto', 'build', './...'])
    assert.equal(line.code, 0, line.stderr)
    assert.match(line.stderr, /^grid: .* · compiles left to go \(--toolexec auto: no peer could take one\) · /m)

    // Action IDs do not depend on -toolexec: a build through the shim finds everything.
    await w.freshGoCache()
    const shimmed = await grid(w, ['--json', 'build', '-o', out2 + '/', './...'], { env: { ...w.env, GRID_TOOLEXEC: 'always' } })
    assert.equal(shimmed.code, 0, shimmed.stderr)
    const s2 = summary(shimmed)
    assert.equal(s2.toolexec, true)
    assert.equal(s2.compiles.local, 0, `nothing to compile: ${JSON.stringify(s2.compiles)}`)
    assert.ok(s2.cache.hits > 50, `${s2.cache.hits} hits`)
    await sameFiles(out2, ref)
  })

  it('go build -o x.a of a package installs a copy: the blob it came from stays in the store', async (t) => {
    // cmd/go installs a file it got from the cache by renaming it, unless it lies under GOCACHE:
    // the helper hands blobs out through a link there.
    const w = await world(t)
    const ref = join(w.dir, 'ref.a')
    const plain = await goBuild(['-o', ref, './asmsum']) // no imports: quick
    assert.equal(plain.code, 0, plain.stderr)
    const out = join(w.dir, 'x.a')
    for (let i = 0; i < 3; i++) {
      await rm(out, { force: true })
      const gocache = await w.freshGoCache()
      // the last with GOCACHE spelled as no clean path is: cmd/go compares paths with it as given
      const env = i === 2 ? { ...w.env, GOCACHE: `${dirname(gocache)}//./${basename(gocache)}` } : w.env
      const r = await grid(w, ['--json', 'build', '-o', out, './asmsum'], { env })
      assert.equal(r.code, 0, r.stderr)
      const s = summary(r)
      if (i > 0) assert.deepEqual([s.cache.misses, s.compiles.local], [0, 0], `build ${i + 1}: ${JSON.stringify(s.cache)}`)
      assert.deepEqual(await readFile(out), await readFile(ref), 'the archive is go build -trimpath\'s')
      const name = createHash('sha256').update(await readFile(out)).digest('hex')
      assert.ok(existsSync(join(w.cacheDir, 'blobs', name.slice(0, 2), name)), `build ${i + 1}: its blob is still in the store`)
    }
  })

  it('takes -debug-trace and -json as go build does: the trace is whole and the graph is still listed', async (t) => {
    // go list runs beside the build for the graph (--graph): it must not write the same trace,
    // and its -f cannot be combined with -json. Each from empty caches, so that go list runs.
    const traced = await world(t)
    const trace = join(traced.dir, 'trace.json')
    const r = await grid(traced, ['--json', '--graph', 'build', `-debug-trace=${trace}`, '-o', join(traced.dir, 'out') + '/', './...'])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(summary(r).compiles.criticalPath !== null, 'the package graph was listed')
    const events = JSON.parse(await readFile(trace, 'utf8')) as Array<{ name: string }>
    assert.ok(events.some(e => e.name === 'Executing action (build example.com/gridfixture/wordfreq)'), 'the trace has the build actions')
    const json = await world(t)
    const j = await grid(json, ['--json', '--graph', 'build', '-json', '-o', join(json.dir, 'out') + '/', './...'])
    assert.equal(j.code, 0, j.stderr)
    assert.ok(summary(j).compiles.criticalPath !== null, 'the package graph was listed with -json')
  })

  it('grid test passes, and reports cached results the second time', async (t) => {
    const w = await world(t)
    const first = await grid(w, ['test', './...'])
    assert.equal(first.code, 0, first.stderr)
    assert.match(first.stdout, /^ok\s+example\.com\/gridfixture\/wordfreq\s+[\d.]+s$/m)
    await w.freshGoCache()
    const second = await grid(w, ['--json', 'test', './...'])
    assert.equal(second.code, 0, second.stderr)
    // with --json, go's stdout moves to stderr and stdout is the summary alone
    assert.match(second.stderr, /^ok\s+example\.com\/gridfixture\/wordfreq\s+\(cached\)$/m)
    assert.equal(summary(second).compiles.local, 0)

    // On a terminal (script(1) gives grid one, as stdout and stderr), as a user runs it: go
    // writes the test's result line to the terminal itself while grid's progress line is drawn
    // there; it came out as `grid: … 1.2 sok  <pkg> 1.0s`. A test that takes a second has
    // the progress line drawn by then.
    const slow = join(w.dir, 'slow')
    await mkdir(slow)
    await writeFile(join(slow, 'go.mod'), 'module example.com/slow\n\ngo 1.22\n')
    await writeFile(join(slow, 'slow_test.go'), 'package slow\n\nimport (\n\t"testing"\n\t"time"\n)\n\nfunc TestSlow(t *testing.T) { time.Sleep(time.Second) }\n')
    const tty = await run('script', ['-qec', `${process.execPath} ${GRID_BIN} test -count=1 .`, '/dev/null'], { cwd: slow, env: w.env })
    assert.equal(tty.code, 0, tty.stdout)
    const result = tty.stdout.split('\n').find(l => l.includes('example.com/slow'))
    assert.match(result ?? '', /^ok {2}\texample\.com\/slow\t[\d.]+s\r?$/, JSON.stringify(tty.stdout))
  })

  it('grid install, run and vet are go install, run and vet: the same binaries, program output, exit status and diagnostics', async (t) => {
    const w = await world(t)
    // A module of our own: a program whose exit status we choose and a package vet objects to.
    const mod = join(w.dir, 'mod')
    await mkdir(join(mod, 'cmd', 'echo'), { recursive: true })
    await mkdir(join(mod, 'lint'), { recursive: true })
    await writeFile(join(mod, 'go.mod'), 'module example.com/gocommands\n\ngo 1.24\n')
    await writeFile(join(mod, 'cmd', 'echo', 'main.go'), [
      'package main', '', 'import (', '\t"fmt"', '\t"os"', '\t"strings"', ')', '',
      'func main() {', '\tfmt.Println(strings.Join(os.Args[1:], " "))', '\tif len(os.Args) > 1 && os.Args[1] == "fail" {', '\t\tos.Exit(3)', '\t}', '}', ''
    ].join('\n'))
    await writeFile(join(mod, 'lint', 'lint.go'), 'package lint\n\nimport "fmt"\n\nfunc Say() { fmt.Printf("%d\\n", "not a number") }\n')
    // a program that shuts down gracefully on a signal
    await mkdir(join(mod, 'cmd', 'wait'), { recursive: true })
    await writeFile(join(mod, 'cmd', 'wait', 'main.go'), [
      'package main', '', 'import (', '\t"fmt"', '\t"os"', '\t"os/signal"', '\t"syscall"', '\t"time"', ')', '',
      'func main() {', '\tc := make(chan os.Signal, 1)', '\tsignal.Notify(c, os.Interrupt, syscall.SIGTERM)', '\tfmt.Println("ready")',
      '\tfmt.Println("got", <-c)', '\ttime.Sleep(300 * time.Millisecond)', '\tfmt.Println("done")', '}', ''
    ].join('\n'))
    const plainEnv = { ...w.env, GOCACHE: referenceGocache() }
    const plain = async (args: string[], env: NodeJS.ProcessEnv = plainEnv): Promise<RunResult> => await run('go', args, { cwd: mod, env })

    const gridBin = join(w.dir, 'gridbin')
    const plainBin = join(w.dir, 'plainbin')
    const installed = await grid(w, ['--json', 'install', './cmd/...'], { cwd: mod, env: { ...w.env, GOBIN: gridBin } })
    assert.equal(installed.code, 0, installed.stderr)
    assert.ok(summary(installed).compiles.local > 0, 'the install compiled through the node')
    assert.equal((await plain(['install', '-trimpath', './cmd/...'], { ...plainEnv, GOBIN: plainBin })).code, 0)
    assert.deepEqual(await sameFiles(gridBin, plainBin), ['echo', 'wait'])

    // grid run: the program's stdout is the user's; its failure is go run's (exit status 1)
    const ran = await grid(w, ['run', './cmd/echo', 'one', 'two'], { cwd: mod })
    assert.equal(ran.code, 0, ran.stderr)
    assert.equal(ran.stdout, 'one two\n')
    const failed = await grid(w, ['run', './cmd/echo', 'fail'], { cwd: mod })
    const plainFailed = await plain(['run', '-trimpath', './cmd/echo', 'fail'])
    assert.equal(plainFailed.code, 1)
    assert.equal(failed.code, plainFailed.code)
    assert.equal(failed.stdout, plainFailed.stdout)
    assert.equal(failed.stderr.split('\n').filter(l => !l.startsWith('grid: ')).join('\n'), plainFailed.stderr)

    // Ctrl-C (SIGINT to the process group): go run waits for the program's graceful end, as
    // without grid; grid's cache helper must not die of it and make go abort
    const interrupted = await runUntilReady(w, mod, (child) => { process.kill(-(child.pid as number), 'SIGINT') })
    assert.equal(interrupted.stdout, 'ready\ngot interrupt\ndone\n', interrupted.stderr)
    assert.doesNotMatch(interrupted.stderr, /GOCACHEPROG/)
    // SIGTERM to grid alone (a supervisor's stop): passed on to go, which dies of it, as go run
    // would, and so does grid
    const terminated = await runUntilReady(w, mod, (child) => { child.kill('SIGTERM') })
    assert.equal(terminated.signal, 'SIGTERM', terminated.stderr)

    // grid vet: go vet's diagnostics and exit status, and the vet result is cached like a build's
    const vetted = await grid(w, ['vet', './...'], { cwd: mod })
    const plainVetted = await plain(['vet', '-trimpath', './...'])
    assert.equal(plainVetted.code, 1)
    assert.match(plainVetted.stderr, /Printf format %d has arg "not a number" of wrong type string/)
    assert.equal(vetted.code, plainVetted.code)
    assert.equal(vetted.stderr.split('\n').filter(l => !l.startsWith('grid: ')).join('\n'), plainVetted.stderr)
    await w.freshGoCache()
    const clean = await grid(w, ['--json', 'vet', './cmd/...'], { cwd: mod })
    assert.equal(clean.code, 0, clean.stderr)
    const s = summary(clean)
    assert.ok(s.cache.hits > 0 && s.compiles.local === 0, `after go clean -cache, vet came from the grid cache: ${JSON.stringify(s.cache)}`)
  })

  it('a go command that a test runs caches in its own GOCACHE, as under plain go test', async (t) => {
    // cmd/go passes its environment, GOCACHEPROG and all, to the test binaries it runs
    const w = await world(t)
    const mod = await nestedGoModule(w.dir)
    const plain = await run('go', ['test', '-count=1', '-trimpath', '.'], { cwd: mod, env: { ...w.env, GOCACHE: referenceGocache() } })
    assert.equal(plain.code, 0, plain.stdout + plain.stderr)
    const r = await grid(w, ['test', '-count=1', '.'], { cwd: mod })
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /^ok\s+example\.com\/nested/m)
  })

  it('a broken package prints the same diagnostics and exit status as go build -trimpath', async (t) => {
    const w = await world(t)
    const cwd = join(FIXTURES, 'broken')
    const out = join(w.dir, 'out')
    const plain = await goBuild(['-o', out + '/', './...'], cwd)
    const viaGrid = await grid(w, ['build', '-o', out + '/', './...'], { cwd })
    assert.equal(plain.code, 1)
    assert.equal(viaGrid.code, 1)
    const gridDiagnostics = viaGrid.stderr.split('\n').filter(l => !l.startsWith('grid: ')).join('\n')
    assert.equal(gridDiagnostics, plain.stderr)
    assert.match(plain.stderr, /cannot use "forty-two"/)
  })

  it('cmd/go hashes the same inputs into every action ID as under plain go build, the C compiler\'s identity included', async (t) => {
    // Cache keys are cmd/go's own action IDs, so grid must not change what goes into them.
    // cmd/go identifies $CC by running `<toolexec> gcc -### -x c -c -` (gcc as a bare name, to
    // be found in PATH); a shim that failed it made cmd/go hash the error in place of the
    // compiler's version, and cgo entries built with one gcc would serve another.
    const w = await world(t)
    const hashInputs = (stderr: string): string[] => stderr.split('\n').filter(l => l.startsWith('HASH[') && !l.startsWith('HASH[moduleIndex]')).sort()
    const plainCache = await tempDir(t, 'gc')
    const plain = await run('go', ['build', '-trimpath', './...'], { cwd: GOMOD, env: { ...w.env, GOCACHE: plainCache, GODEBUG: 'gocachehash=1' } })
    assert.equal(plain.code, 0, plain.stderr)
    const viaGrid = await grid(w, ['build', './...'], { env: { ...w.env, GODEBUG: 'gocachehash=1' } })
    assert.equal(viaGrid.code, 0, viaGrid.stderr)
    const expected = hashInputs(plain.stderr)
    const cc = expected.filter(l => l.includes('CC ID'))
    assert.ok(cc.length > 0 && cc.every(l => l.includes('CC ID=')), `plain go hashed the C compiler's identity: ${cc.join('\n')}`)
    const got = hashInputs(viaGrid.stderr)
    assert.deepEqual(got.filter(l => l.includes('CC ID')), cc, 'the C compiler lines')
    assert.equal(got.length, expected.length)
    assert.deepEqual(got, expected)
  })

  it('with no node at all, the shim compiles locally and the output is identical', async (t) => {
    const w = await world(t)
    const { detectGo, ensureShim } = await import('@grid/node')
    const shim = await ensureShim(w.cacheDir, await detectGo())
    const ref = join(w.dir, 'ref')
    const out = join(w.dir, 'out')
    const fallbackLog = join(w.dir, 'fallbacks')
    assert.equal((await goBuild(['-o', ref + '/', './...'])).code, 0)
    const r = await run('go', ['build', '-trimpath', `-toolexec=${shim}`, '-o', out + '/', './...'], {
      cwd: GOMOD,
      env: { ...w.env, GRID_SOCKET: join(w.dir, 'nobody-here.sock'), GRID_FALLBACK_LOG: fallbackLog, GOCACHEPROG: `${shim} cacheprog` }
    })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stderr, '', 'the shim and helper print nothing of their own')
    await sameFiles(out, ref)
    const { readFile } = await import('node:fs/promises')
    const reasons = (await readFile(fallbackLog, 'utf8')).trim().split('\n')
    assert.ok(reasons.length > 10)
    assert.deepEqual([...new Set(reasons)], ['node-unreachable'])
  })
})

describe('grid command line', () => {
  it('refuses -toolexec in the go arguments with a hint, before it starts a node of its own (none left behind, nor its socket)', async (t) => {
    const w = await world(t)
    const r = await grid(w, ['--json', 'build', '-toolexec=/bin/true', './...'])
    assert.equal(r.code, 1)
    assert.equal(JSON.parse(r.stdout).error.code, 'GRID_ERR_TOOLEXEC_CONFLICT')
    // with no daemon, an embedded node was started first, and the exit killed it: its socket stayed
    const noNode = (how: string): void => {
      assert.equal(existsSync(w.control), false, `${how}: no socket left at the control path`)
      assert.equal(existsSync(join(w.cacheDir, 'index')), false, `${how}: no node opened the cache`)
    }
    noNode('-toolexec in the arguments')
    const inGoflags = await grid(w, ['--json', 'build', './...'], { env: { ...w.env, GOFLAGS: '-toolexec=/bin/true' } })
    assert.equal(inGoflags.code, 1)
    assert.equal(JSON.parse(inGoflags.stdout).error.code, 'GRID_ERR_TOOLEXEC_CONFLICT')
    noNode('-toolexec in GOFLAGS')
    // grid's own option after the command is go's flag: the hint says where grid's goes
    const misplaced = await grid(w, ['build', '--toolexec', 'auto', './...'])
    assert.equal(misplaced.code, 1)
    assert.match(misplaced.stderr, /hint: grid's own --toolexec goes before the command: grid --toolexec auto build/)
  })

  it('rejects unknown global options and commands by name', async (t) => {
    const w = await world(t)
    const a = await grid(w, ['--frobnicate', 'build'])
    assert.equal(a.code, 2)
    assert.match(a.stderr, /unknown option --frobnicate \(GRID_ERR_USAGE\)/)
    const bad = await grid(w, ['--toolexec', 'sometimes', 'build', './...'])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /--toolexec must be always or auto, not "sometimes" \(GRID_ERR_USAGE\)/)
    const b = await grid(w, ['frobnicate'])
    assert.equal(b.code, 2)
    assert.match(b.stderr, /unknown command frobnicate/)
    const c = await grid(w, ['cache', 'gc', '--max-size', 'lots'])
    assert.equal(c.code, 2)
    assert.match(c.stderr, /^grid: --max-size: not a size: "lots"/m)
    // a flag that needs a value does not take the next flag as one; a switch takes only true or false
    const taken = await grid(w, ['--cache', '--graph', 'status'])
    assert.equal(taken.code, 2)
    assert.match(taken.stderr, /^grid: --cache needs a value, got the flag --graph \(GRID_ERR_USAGE\)/m)
    const key = join(w.dir, 'swarm.key')
    assert.equal((await grid(w, ['init', '--swarm-key', key])).code, 0)
    const before = await readFile(key, 'utf8')
    const off = await grid(w, ['init', '--swarm-key', key, '--force=false'])
    assert.equal(off.code, 2, 'the key is there and --force is off')
    assert.match(off.stderr, /a swarm key already exists/)
    const maybe = await grid(w, ['init', '--swarm-key', key, '--force=maybe'])
    assert.equal(maybe.code, 2)
    assert.match(maybe.stderr, /--force is a switch: give it alone, or as --force=true or --force=false, not =maybe/)
    assert.equal(await readFile(key, 'utf8'), before, 'the team\'s key is untouched')
    for (const args of [['cache', 'stats', 'extra'], ['cache', 'verify', 'extra'], ['cache', 'gc', '--max-size', '1G', 'extra']]) {
      const r = await grid(w, args)
      assert.equal(r.code, 2, args.join(' '))
      assert.match(r.stderr, new RegExp(`grid ${args.slice(0, 2).join(' ')} takes no arguments, got extra`))
    }
    const help = await grid(w, ['help', 'help'])
    assert.equal(help.code, 0, help.stderr)
    assert.match(help.stdout, /^usage: grid \[global options\] <command>/m)
    // a bad flag value is a usage error, though the same check on the config file is not
    for (const [flag, value] of [['--offload', 'sometimes'], ['--trust', 'all'], ['--listen', 'foo'], ['--task-memory', '100M'], ['--compile-heap', '1M'], ['--compile-heap', 'lots'], ['--cache-max', 'lots']]) {
      const d = await grid(w, ['daemon', flag as string, value as string])
      assert.equal(d.code, 2, `${flag} ${value}: ${d.stderr}`)
      assert.match(d.stderr, new RegExp(`^grid: ${flag}:? .*\\(GRID_ERR_USAGE\\)`, 'm'))
    }
  })

  it('grid build --help is grid\'s help; later -h flags are go\'s; peers with no node says so', async (t) => {
    const w = await world(t)
    for (const flag of ['-h', '-help', '--help']) {
      const r = await grid(w, ['build', flag])
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /^usage: grid \[global options\] build/)
      assert.match(r.stdout, /go help build/)
    }
    for (const sub of ['install', 'run', 'vet']) {
      const r = await grid(w, [sub, '--help'])
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, new RegExp(`^ +grid \\[global options\\] ${sub} `, 'm'))
    }
    // not first, -h is go's: go prints its own usage and exits 2, as it does without grid
    const passed = await grid(w, ['build', '-v', '-h'])
    assert.equal(passed.code, 2)
    assert.doesNotMatch(passed.stdout, /usage: grid/)
    assert.match(passed.stderr, /^usage: go build/m)
    const p = await grid(w, ['peers', '--json']) // --json after the command, as people type it
    assert.equal(p.code, 1)
    assert.equal(JSON.parse(p.stdout).error.code, 'GRID_ERR_NODE_UNREACHABLE')
  })

  it('names the Go it found when it is too old, or missing', async (t) => {
    const w = await world(t)
    const bin = join(await tempDir(t), 'bin')
    await mkdir(bin)
    const fakeGo = join(bin, 'go')
    await writeFile(fakeGo, '#!/bin/sh\nif [ "$1" = env ]; then printf "go1.21.5\\n/usr/lib/go\\nlinux\\namd64\\n"; else echo "go version go1.21.5 linux/amd64"; fi\n')
    await chmod(fakeGo, 0o755)
    const old = await grid(w, ['--json', 'build', './...'], { env: { ...w.env, GRID_GO: fakeGo } })
    assert.equal(old.code, 1)
    const err = JSON.parse(old.stdout).error
    assert.equal(err.code, 'GRID_ERR_GO_TOO_OLD')
    assert.match(err.message, /found Go go1\.21\.5, grid needs go1\.24/)
    const missing = await grid(w, ['--json', 'build', './...'], { env: { ...w.env, GRID_GO: join(bin, 'nope') } })
    assert.equal(JSON.parse(missing.stdout).error.code, 'GRID_ERR_GO_MISSING')
    // no node was started (nor a cache made) for builds that could not run: the cache holds
    // only the shim the test world seeded it with
    assert.deepEqual(await readdir(w.cacheDir), ['shim'])
  })

  it('go\'s --C dir and --C=dir stay first on go\'s command line, as -C does', async (t) => {
    const w = await world(t)
    const mod = await flagsModule(w.dir)
    const ref = join(w.dir, 'ref')
    const plain = await run('go', ['build', '-C', mod, '-trimpath', '-o', ref + '/', '.'], { cwd: w.dir, env: { ...w.env, GOCACHE: referenceGocache() } })
    assert.equal(plain.code, 0, plain.stderr)
    for (const [i, chdir] of [['--C', mod], [`--C=${mod}`]].entries()) {
      const out = join(w.dir, `out${i}`)
      const r = await grid(w, ['--json', '--graph', 'build', ...chdir, '-o', out + '/', '.'], { cwd: w.dir })
      assert.equal(r.code, 0, `${chdir.join(' ')}: ${r.stderr}`)
      await sameFiles(out, ref)
      // the first, cold, runs long enough to list the graph: go list got -C first too
      if (i === 0) assert.notEqual(summary(r).compiles.criticalPath, null, 'the package graph was listed in that directory')
    }
    // a -C with no value is go's to refuse, as plain go does (not the directory "-trimpath")
    const bare = await grid(w, ['build', '-C'], { cwd: mod })
    assert.equal(bare.code, 2, bare.stderr)
    assert.match(bare.stderr, /flag needs an argument: -C/)
  })

  it('a checkout whose path is not UTF-8: its compiles run here, its outputs are stored, and it is byte-identical', async (t) => {
    const w = await world(t)
    // node names paths by strings: the directory is made from bytes and entered by the shell
    await rename(await flagsModule(w.dir), Buffer.concat([Buffer.from(join(w.dir, 'lat')), Buffer.from([0xe9]), Buffer.from('n')]))
    const inLatin1 = async (env: NodeJS.ProcessEnv, ...cmd: string[]): Promise<RunResult> =>
      await run('bash', ['-c', 'cd "$D/lat"$\'\\xe9\'"n" && exec "$@"', 'bash', ...cmd], { env: { ...env, D: w.dir } })
    const ref = join(w.dir, 'ref')
    const plain = await inLatin1({ ...w.env, GOCACHE: referenceGocache() }, 'go', 'build', '-trimpath', '-o', ref + '/', '.')
    assert.equal(plain.code, 0, plain.stderr)
    const builds = []
    for (const i of [1, 2]) {
      const out = join(w.dir, `out${i}`)
      const r = await inLatin1({ ...w.env, GOCACHE: join(w.dir, `gocache-${i}`) }, process.execPath, GRID_BIN, '--json', 'build', '-o', out + '/', '.')
      assert.equal(r.code, 0, r.stderr)
      await sameFiles(out, ref)
      builds.push(summary(r))
    }
    const [cold, warm] = builds
    // cmd/go starts every compile in its own working directory: all of them stay here
    assert.equal(cold.compiles.localReasons['path-not-utf8'], cold.compiles.local, JSON.stringify(cold.compiles.localReasons))
    assert.deepEqual(cold.compiles.fallbacks, {}, 'no compile failed in the node for want of its files')
    assert.equal(cold.cache.edited ?? 0, 0, 'not taken for sources edited during the build')
    assert.equal(warm.compiles.local + warm.compiles.remote, 0, 'every output of the first build was stored')
  })

  it('a -toolexec among the program\'s arguments (grid run) or the test binary\'s (after -args) is theirs, not a conflict', async (t) => {
    const w = await world(t)
    const mod = await flagsModule(w.dir)
    const plainEnv = { ...w.env, GOCACHE: referenceGocache() }
    const cases: Array<[string[], string]> = [
      [['.', '-toolexec=foo', 'x'], 'none untagged -toolexec=foo x\n'],
      // a value of go's own flag (-tags foo) is not the package: the program's arguments start at .
      [['-tags', 'foo', '.', '-toolexec', 'bar'], 'none foo -toolexec bar\n']
    ]
    for (const [args, expected] of cases) {
      const plain = await run('go', ['run', '-trimpath', ...args], { cwd: mod, env: plainEnv })
      assert.equal(plain.stdout, expected, plain.stderr)
      const ran = await grid(w, ['run', ...args], { cwd: mod })
      assert.equal(ran.code, 0, `grid run ${args.join(' ')}: ${ran.stderr}`)
      assert.equal(ran.stdout, expected)
    }
    // go's own flags before the package are still scanned, past the values of go's flags
    const own = await grid(w, ['--json', 'run', '-tags', 'foo', '-toolexec=/bin/true', '.'], { cwd: mod })
    assert.equal(own.code, 1)
    assert.equal(JSON.parse(own.stdout).error.code, 'GRID_ERR_TOOLEXEC_CONFLICT')

    const plainTest = await run('go', ['test', '-trimpath', '.', '-args', '-toolexec=foo'], { cwd: mod, env: plainEnv })
    assert.equal(plainTest.code, 0, plainTest.stdout + plainTest.stderr)
    const tested = await grid(w, ['test', '.', '-args', '-toolexec=foo'], { cwd: mod })
    assert.equal(tested.code, 0, tested.stdout + tested.stderr)
    assert.match(tested.stdout, /^ok\s+example\.com\/flags\s/m)
  })
})

/**
 * `grid run ./cmd/wait` in a process group of its own; once the program says it is ready,
 * `signal` is sent. Returns the exit status and the output.
 */
async function runUntilReady (w: World, cwd: string, signal: (child: ChildProcess) => void): Promise<{ code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, [GRID_BIN, 'run', './cmd/wait'], { cwd, env: w.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  let signalled = false
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
    if (!signalled && stdout.includes('ready\n')) { signalled = true; signal(child) }
  })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  // 'exit', not 'close': a program go leaves behind (go run dies of SIGTERM, as without grid)
  // still holds the pipes; the group is killed after
  const ended = await new Promise<{ code: number | null, signal: NodeJS.Signals | null }>(resolve => child.on('exit', (code, signal) => resolve({ code, signal })))
  await new Promise(resolve => setTimeout(resolve, 500)) // the last output
  try { process.kill(-(child.pid as number), 'SIGKILL') } catch {}
  return { ...ended, stdout, stderr }
}

/**
 * A module of one program that says what it was built with: `version` (for -ldflags -X), the
 * build tag foo, and its arguments; and a test of a test-binary flag named -toolexec.
 */
async function flagsModule (dir: string): Promise<string> {
  const mod = join(dir, 'flags')
  await mkdir(mod, { recursive: true })
  await writeFile(join(mod, 'go.mod'), 'module example.com/flags\n\ngo 1.24\n')
  await writeFile(join(mod, 'main.go'), [
    'package main', '', 'import (', '\t"os"', '\t"strings"', ')', '', 'var version = "none"', '',
    'func main() {', '\tos.Stdout.WriteString(strings.Join(append([]string{version, tag}, os.Args[1:]...), " ") + "\\n")', '}', ''
  ].join('\n'))
  await writeFile(join(mod, 'tag_foo.go'), '//go:build foo\n\npackage main\n\nconst tag = "foo"\n')
  await writeFile(join(mod, 'tag_other.go'), '//go:build !foo\n\npackage main\n\nconst tag = "untagged"\n')
  await writeFile(join(mod, 'main_test.go'), [
    'package main', '', 'import (', '\t"flag"', '\t"testing"', ')', '',
    'var toolexec = flag.String("toolexec", "", "the test binary\'s own flag")', '',
    'func TestArgs(t *testing.T) {', '\tif *toolexec != "foo" {', '\t\tt.Fatalf("-toolexec = %q", *toolexec)', '\t}', '}', ''
  ].join('\n'))
  return mod
}
