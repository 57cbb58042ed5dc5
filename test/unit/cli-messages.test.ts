// What a user sees when they get something wrong: an error with its code and a hint, on stdout
// as JSON with --json, never a stack trace (which the CLI prints for GRID_ERR_INTERNAL, a bug).
import assert from 'node:assert/strict'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { detectGo } from '@grid/node'
import { MAX_SLOTS } from '@grid/protocol'
import { GRID_BIN, defer, run, tempDir, type RunResult } from '../helpers/index.js'

/** The CLI with a cache, control socket and config of the test's own. */
async function cli (dir: string, args: string[], timeoutMs = 30_000, cwd = dir, extraEnv: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  const config = join(dir, 'config.json')
  await writeFile(config, JSON.stringify({ mdns: false, listen: ['/ip4/127.0.0.1/tcp/0'] }))
  const env: NodeJS.ProcessEnv = { ...process.env, ...extraEnv, GRID_CACHE: join(dir, 'grid'), GRID_CONTROL: join(dir, 'g.sock'), GRID_CONFIG: config }
  delete env.DEBUG
  return await run(process.execPath, [GRID_BIN, ...args], { cwd, env, timeoutMs })
}

/** A user error: its code and hint on stderr, no stack trace. */
function userError (r: RunResult, code: string, message: RegExp): void {
  assert.match(r.stderr, new RegExp(`^grid: .*\\(${code}\\)$`, 'm'), r.stderr)
  assert.match(r.stderr, message)
  assert.match(r.stderr, /^ {2}hint: /m, 'with a hint')
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace')
}

describe('messages for user errors', () => {
  it('grid init at a path where no file can be written is GRID_ERR_SWARM_KEY with a hint, not a bug with a stack trace', async (t) => {
    const dir = await tempDir(t)
    const file = join(dir, 'file')
    await writeFile(file, 'not a directory')
    const underFile = await cli(dir, ['init', '--swarm-key', join(file, 'swarm.key')])
    assert.equal(underFile.code, 1)
    userError(underFile, 'GRID_ERR_SWARM_KEY', /cannot write the swarm key to .*file\/swarm\.key/)

    const aDir = join(dir, 'keys')
    await mkdir(aDir)
    const plain = await cli(dir, ['init', '--swarm-key', aDir])
    assert.equal(plain.code, 1)
    userError(plain, 'GRID_ERR_SWARM_KEY', /: it is a directory/)
    assert.doesNotMatch(plain.stderr, /already exists/, 'a directory is not a key that is there already')
    const forced = await cli(dir, ['init', '--swarm-key', aDir, '--force'])
    assert.equal(forced.code, 1)
    userError(forced, 'GRID_ERR_SWARM_KEY', /: it is a directory/)
    assert.deepEqual(await readdir(aDir), [], 'nothing is left in it')
    assert.deepEqual((await readdir(dir)).sort(), ['config.json', 'file', 'keys'], 'nor beside it')

    const json = await cli(dir, ['--json', 'init', '--swarm-key', join(file, 'swarm.key')])
    assert.equal(json.code, 1)
    const { error } = JSON.parse(json.stdout)
    assert.equal(error.code, 'GRID_ERR_SWARM_KEY')
    assert.equal(typeof error.hint, 'string')
  })

  it('grid daemon --no-mesh still refuses a bad mesh flag by name, rather than ignore it; the hint is the daemon\'s help', async (t) => {
    const dir = await tempDir(t)
    for (const [flag, value] of [['--trust', 'all'], ['--accept-remote', 'sometimes'], ['--listen', 'foo'], ['--task-memory', '100M']]) {
      // Without the check it would start a daemon: the timeout ends it.
      const r = await cli(dir, ['daemon', '--no-mesh', flag as string, value as string], 15_000)
      assert.equal(r.code, 2, `${flag} ${value}: ${r.stderr}`)
      userError(r, 'GRID_ERR_USAGE', new RegExp(`^grid: ${flag}:? `, 'm'))
    }
    // the help a bad daemon flag points at is the daemon's, which lists the values
    const slots = await cli(dir, ['daemon', '--slots', '0'])
    assert.equal(slots.code, 2)
    userError(slots, 'GRID_ERR_USAGE', /^ {2}hint: run `grid daemon --help`/m)
    // a plain decimal only: Number() takes `0x10` for 16
    const hex = await cli(dir, ['daemon', '--no-mesh', '--slots', '0x10'], 15_000)
    assert.equal(hex.code, 2, hex.stderr)
    userError(hex, 'GRID_ERR_USAGE', /^grid: --slots must be a positive integer, got 0x10/m)
    // more than an advert may offer: every member would refuse its adverts, so it would be listed by none
    const tooMany = await cli(dir, ['daemon', '--no-mesh', '--slots', String(MAX_SLOTS + 1)], 15_000)
    assert.equal(tooMany.code, 2, tooMany.stderr)
    userError(tooMany, 'GRID_ERR_USAGE', new RegExp(`^grid: --slots must be at most ${MAX_SLOTS}, got ${MAX_SLOTS + 1} `, 'm'))
    const help = await cli(dir, ['daemon', '--help'])
    assert.match(help.stdout, new RegExp(`at most\\s+${MAX_SLOTS}\\)`), 'the help names the maximum')
  })

  it('with --json, grid with no command is a JSON usage error on stdout, as an unknown command is', async (t) => {
    const dir = await tempDir(t)
    for (const args of [['--json'], ['--json', 'frobnicate']]) {
      const r = await cli(dir, args)
      assert.equal(r.code, 2, args.join(' '))
      const { error } = JSON.parse(r.stdout)
      assert.equal(error.code, 'GRID_ERR_USAGE', args.join(' '))
      assert.equal(typeof error.hint, 'string')
    }
    const plain = await cli(dir, [])
    assert.equal(plain.code, 2)
    assert.equal(plain.stdout, '')
    assert.match(plain.stderr, /^usage: grid \[global options\] <command>/m, 'without --json, the help on stderr')
  })

  it('grid -help is the help, as grid CMD -help is the command\'s, not "unknown option -help"', async (t) => {
    const dir = await tempDir(t)
    const long = await cli(dir, ['--help'])
    const short = await cli(dir, ['-help'])
    assert.equal(short.code, 0, short.stderr)
    assert.equal(short.stdout, long.stdout)
    const status = await cli(dir, ['-help', 'status'])
    assert.equal(status.code, 0, status.stderr)
    assert.equal(status.stdout, (await cli(dir, ['status', '-help'])).stdout)
  })

  it('with --json, help is JSON on stdout, {command, help}, in every form it is asked for, not text (grid --json status --help)', async (t) => {
    const dir = await tempDir(t)
    const commands = ['build', 'install', 'run', 'test', 'vet', 'env', 'daemon', 'stop', 'status', 'peers', 'init', 'cache']
    const forms = (command: string): string[][] => [
      ['--json', command, '--help'], ['--json', 'help', command], ['--json', '--help', command], ['--json', command, '-h'],
      // --json after the command is grid's only after grid's own commands
      ...(['build', 'install', 'run', 'test', 'vet'].includes(command) ? [] : [[command, '--json', '--help'], [command, '-help', '-json']])
    ]
    // every form for grid's own help, a go command's and one of grid's; one form for the others
    // (each is a process start: ~0.2 s)
    const asks: Array<[string | undefined, string[][]]> = [
      [undefined, [['--json', '--help'], ['--json', 'help'], ['--help', '--json=1']]],
      ['build', forms('build')], ['status', forms('status')],
      ...commands.filter(c => c !== 'build' && c !== 'status').map((c): [string, string[][]] => [c, [['--json', c, '--help']]])
    ]
    for (const [command, argsList] of asks) {
      const plain = await cli(dir, command === undefined ? ['--help'] : [command, '--help'])
      assert.equal(plain.code, 0, plain.stderr)
      for (const args of argsList) {
        const r = await cli(dir, args)
        assert.equal(r.code, 0, `grid ${args.join(' ')}: ${r.stderr}`)
        assert.equal(r.stderr, '', args.join(' '))
        let parsed: unknown
        assert.doesNotThrow(() => { parsed = JSON.parse(r.stdout) }, `grid ${args.join(' ')} printed text:\n${r.stdout.slice(0, 200)}`)
        assert.deepEqual(parsed, { command: command ?? null, help: plain.stdout.replace(/\n$/, '') }, args.join(' '))
      }
    }
    // --json=false is text, as without it
    const text = await cli(dir, ['status', '--help', '--json=false'])
    assert.match(text.stdout, /^usage: grid \[global options\] status/)
  })

  it('--json is taken in one set of forms before and after grid\'s commands, and a bad global option is a JSON error when it was asked for', async (t) => {
    const dir = await tempDir(t)
    // a bad global option: the error in the form asked for, whatever form --json has
    for (const args of [['--json=true', '--bogus'], ['--bogus', '--json=1'], ['--bogus', 'status', '--json'], ['--json=maybe', 'status']]) {
      const r = await cli(dir, args)
      assert.equal(r.code, 2, args.join(' '))
      assert.equal(JSON.parse(r.stdout).error.code, 'GRID_ERR_USAGE', args.join(' '))
      assert.equal(r.stderr, '', args.join(' '))
    }
    for (const args of [['--json=false', '--bogus'], ['--bogus', 'build', '--json']]) {
      const r = await cli(dir, args)
      assert.equal(r.code, 2, args.join(' '))
      userError(r, 'GRID_ERR_USAGE', /unknown option --bogus/)
      assert.equal(r.stdout, '', args.join(' '))
    }
    // after a command of grid's own, --json takes the forms it takes before it (and -json, as
    // the commands' own flags are taken)
    for (const args of [['--json=true', 'status'], ['status', '--json'], ['status', '--json=true'], ['status', '--json=1'], ['status', '-json']]) {
      const r = await cli(dir, args)
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
      assert.equal(JSON.parse(r.stdout).running, false, args.join(' '))
    }
    for (const args of [['status', '--json=false'], ['--json', 'status', '--json=false']]) {
      const r = await cli(dir, args)
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stdout, /^node: not running/, args.join(' '))
    }
    const bad = await cli(dir, ['status', '--json=maybe'])
    assert.equal(bad.code, 2)
    assert.match(JSON.parse(bad.stdout).error.message, /--json is a switch/)
  })

  it('a daemon that fails to start says why, and not that its node "stopped"', async (t) => {
    const dir = await tempDir(t)
    const r = await cli(dir, ['daemon', '--swarm-key', join(dir, 'missing.key')])
    assert.equal(r.code, 1)
    userError(r, 'GRID_ERR_SWARM_KEY', /cannot read the swarm key .*missing\.key/)
    assert.doesNotMatch(r.stderr, /stopped/, 'a node that never started did not stop')
  })

  it('a daemon whose port is taken names the address once, with the reason, and a hint naming --listen and the config\'s "listen"', async (t) => {
    const dir = await tempDir(t)
    const taken = createServer()
    await new Promise<void>(resolve => taken.listen(0, '127.0.0.1', resolve))
    defer(t, () => { taken.close() })
    const addr = `/ip4/127.0.0.1/tcp/${(taken.address() as AddressInfo).port}`
    const r = await cli(dir, ['daemon', '--listen', addr])
    assert.equal(r.code, 1, r.stderr)
    userError(r, 'GRID_ERR_MESH_START', /^grid: the mesh could not listen on \S+: address already in use \(EADDRINUSE\) \(GRID_ERR_MESH_START\)$/m)
    assert.equal(r.stderr.split(addr).length - 1, 1, `the address once: ${r.stderr}`)
    assert.match(r.stderr, /^ {2}hint: another program \(another grid daemon\?\) uses port \d+: .*`grid daemon --listen \/ip4\/0\.0\.0\.0\/tcp\/0`.*"listen" in the config file/m)
  })

  it('a --cache, --control or --swarm-key under /proc is an error naming it, not a hang (Node\'s recursive mkdir spins there)', { skip: process.platform !== 'linux' }, async (t) => {
    const dir = await tempDir(t)
    // Without the fix each spins until the timeout kills it.
    const cache = await cli(dir, ['--cache', '/proc/grid-test/cache', 'status'], 15_000)
    assert.equal(cache.code, 1, cache.stderr)
    userError(cache, 'GRID_ERR_CACHE_OPEN', /cannot use \/proc\/grid-test\/cache as grid's cache dir: ENOENT/)
    const key = await cli(dir, ['init', '--swarm-key', '/proc/grid-test/swarm.key'], 15_000)
    assert.equal(key.code, 1, key.stderr)
    userError(key, 'GRID_ERR_SWARM_KEY', /its directory cannot be made/)
    const control = await cli(dir, ['--control', '/proc/grid-test/g.sock', 'daemon', '--no-mesh'], 15_000)
    assert.equal(control.code, 1, control.stderr)
    userError(control, 'GRID_ERR_SOCKET_PATH', /cannot make the control socket's directory for \/proc\/grid-test\/g\.sock/)
  })

  it('a --control path whose directory cannot be made is GRID_ERR_SOCKET_PATH with a hint, not a bug with a stack trace', async (t) => {
    const dir = await tempDir(t)
    await writeFile(join(dir, 'file'), 'not a directory')
    const r = await cli(dir, ['--control', join(dir, 'file', 'run', 'g.sock'), 'daemon', '--no-mesh'])
    assert.equal(r.code, 1, r.stderr)
    userError(r, 'GRID_ERR_SOCKET_PATH', /cannot make the control socket's directory for .*file\/run\/g\.sock: ENOTDIR/)
  })

  it('a bad GRID_TOOLEXEC does not take the help that explains it; elsewhere its hint says how to fix it', async (t) => {
    const dir = await tempDir(t)
    const env = { GRID_TOOLEXEC: 'sometimes' }
    for (const args of [['--help'], ['help', 'build'], ['--version']]) {
      const r = await cli(dir, args, 30_000, dir, env)
      assert.equal(r.code, 0, `grid ${args.join(' ')}: ${r.stderr}`)
    }
    const r = await cli(dir, ['status'], 30_000, dir, env)
    assert.equal(r.code, 2)
    userError(r, 'GRID_ERR_USAGE', /GRID_TOOLEXEC must be always or auto, not "sometimes"[^]*hint: set GRID_TOOLEXEC to always or auto, or unset it/)
  })

  it('GRID_GO set but empty is the go on PATH, as an empty GRID_CACHE is the default cache', async (t) => {
    const old = process.env.GRID_GO
    defer(t, () => { if (old === undefined) delete process.env.GRID_GO; else process.env.GRID_GO = old })
    delete process.env.GRID_GO
    const onPath = await detectGo()
    process.env.GRID_GO = ''
    const empty = await detectGo()
    assert.equal(empty.go, 'go')
    assert.equal(empty.goroot, onPath.goroot)
    process.env.GRID_GO = join(await tempDir(t), 'nope')
    await assert.rejects(detectGo(), (err: Error & { code?: string, hint?: string }) =>
      err.code === 'GRID_ERR_GO_MISSING' && /GRID_GO names it/.test(err.message) && /GRID_GO/.test(err.hint ?? ''))
  })

  it('a go that cannot run `go env` (go.mod asks for a toolchain it cannot fetch) is go\'s error, not "grid needs go1.24"', async (t) => {
    const dir = await tempDir(t)
    const mod = join(dir, 'mod')
    await mkdir(mod)
    await writeFile(join(mod, 'go.mod'), 'module example.com/future\n\ngo 1.99\n')
    await writeFile(join(mod, 'main.go'), 'package main\n\nfunc main() {}\n')
    // the real go, offline: it cannot fetch go1.99, and says so
    const env = { GOPROXY: 'off', GOTOOLCHAIN: 'auto' }
    const plain = await run('go', ['build', '.'], { cwd: mod, env: { ...process.env, ...env } })
    assert.equal(plain.code, 1)
    const r = await cli(dir, ['--json', 'build', '.'], 30_000, mod, env)
    assert.equal(r.code, 1)
    const { error } = JSON.parse(r.stdout)
    assert.equal(error.code, 'GRID_ERR_GO_FAILED', error.message)
    assert.ok(error.message.includes(plain.stderr.trim().split('\n').at(-1) as string), `go's own words: ${error.message}`)
    assert.doesNotMatch(error.message, /grid needs go1\.24/)
  })
})
