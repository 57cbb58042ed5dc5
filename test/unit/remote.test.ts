// Remote compile tasks: what a worker refuses, the relocation recipe, export-data stripping.
import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { describe, it } from 'node:test'
import { errorCode, validateTask, TASK_VERSION, type CompileTask } from '@grid/protocol'
import { COMPILE_VALUE_FLAGS, Sandboxes, buildTask, compileArgs, exportDataOnly, outputOf, parseCompileArgs, redirectOutputs, relocatedTrimpath } from '@grid/node/server'
import { tempDir, waitFor } from '../helpers/index.js'

const h = 'ab'.repeat(32)
function task (change: Partial<CompileTask> = {}): Record<string, unknown> {
  return {
    v: TASK_VERSION,
    compiler: 'compile version go1.26.8',
    goroot: '/usr/local/go',
    env: { GOOS: 'linux', GOARCH: 'amd64' },
    flags: ['-p=example.com/m', '-lang=go1.24', '-complete', '-nolocalimports', '-pack'],
    trimpath: '/src/m=>example.com/m',
    inputFlags: { '-importcfg': '/tmp/w/b001/importcfg' },
    sources: ['/src/m/a.go'],
    files: [{ path: '/src/m/a.go', sha256: h, size: 10 }, { path: '/tmp/w/b001/importcfg', sha256: h, size: 10 }],
    asmhdr: false,
    importPath: 'example.com/m',
    ...change
  }
}

describe('remote tasks', () => {
  it('accepts a well-formed task', () => {
    assert.equal(validateTask(task()).importPath, 'example.com/m')
  })

  it('refuses escaping or relative paths, unknown flags, oversized inputs and bad env, naming the problem', () => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['.. in a path', { files: [{ path: '/src/m/../../etc/passwd', sha256: h, size: 1 }], sources: ['/src/m/../../etc/passwd'] }, /clean absolute path/],
      ['relative path', { files: [{ path: 'src/a.go', sha256: h, size: 1 }], sources: ['src/a.go'] }, /clean absolute path/],
      ['unknown flag', { flags: ['-cpuprofile=/tmp/x'] }, /flag "-cpuprofile=\/tmp\/x" is not allowed/],
      ['flag with a path value', { flags: ['-o=/etc/x'] }, /is not allowed/],
      ['oversized input', { files: [{ path: '/src/m/a.go', sha256: h, size: 1e9 }] }, /size of \/src\/m\/a\.go/],
      ['too many bytes in all', { files: Array.from({ length: 5 }, (_, i) => ({ path: `/src/m/f${i}.go`, sha256: h, size: 60 * 2 ** 20 })), sources: ['/src/m/f0.go'] }, /inputs total/],
      ['env outside the list', { env: { LD_PRELOAD: '/x.so' } }, /LD_PRELOAD is not allowed/],
      ['GOROOT in env', { env: { GOROOT: '/evil' } }, /GOROOT is not allowed/],
      ['source not carried', { sources: ['/src/m/b.go'] }, /sources must be/],
      ['input flag not carried', { inputFlags: { '-importcfg': '/elsewhere' } }, /does not carry/],
      ['unknown input flag', { inputFlags: { '-o': '/src/m/a.go' } }, /input flag -o is not allowed/],
      ['bad hash', { files: [{ path: '/src/m/a.go', sha256: 'zz', size: 1 }] }, /hash of/],
      ['the compiler\'s debug switches', { env: { GOCOMPILEDEBUG: 'dumpinlfuncprops=/home/dev/.ssh/authorized_keys' } }, /GOCOMPILEDEBUG .* is not sent to peers/],
      ['an env value that is not a setting', { env: { GODEBUG: 'a=1 b' } }, /environment value of GODEBUG/],
      ['a line break in a path', { files: [{ path: '/src/m/a\n.go', sha256: h, size: 10 }], sources: ['/src/m/a\n.go'] }, /clean absolute path/],
      ['-D', { flags: ['-p=example.com/m', '-D=/'] }, /flag "-D=\/" is not allowed/],
      ['a debug switch but cmd/go\'s -d=libfuzzer', { flags: ['-p=example.com/m', '-nolocalimports', '-d=libfuzzer', '-d=ssa/check/on'] }, /flag "-d=ssa\/check\/on" is not allowed/],
      ['no -nolocalimports', { flags: ['-p=example.com/m', '-pack'] }, /a task must carry -nolocalimports/],
      ['no importcfg', { inputFlags: {} }, /a task must carry -importcfg/],
      ['one input, two sizes', { files: [{ path: '/src/m/a.go', sha256: h, size: 10 }, { path: '/tmp/w/b001/importcfg', sha256: h, size: 11 }] }, /declared with two sizes/]
    ]
    for (const [what, change, message] of cases) {
      assert.throws(() => validateTask(task(change as Partial<CompileTask>), 'peerX'),
        (err: unknown) => errorCode(err) === 'GRID_ERR_TASK_REFUSED' && message.test((err as Error).message), what)
    }
  })

  it('refuses a task of another grid version (another version, a field it does not know or lacks) as incompatible, not as a bad task', () => {
    // A field a newer requester added may change the compile: a worker that ignored it could
    // return another archive than the requester's own compiler writes.
    const { importPath, ...lacking } = task()
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['another task version', task({ v: TASK_VERSION + 1 }), /version 2, this worker's is 1/],
      ['an unknown field', { ...task(), gcflags: ['-N'] }, /the task has the field "gcflags", unknown to this version/],
      ['a field missing', lacking, /the task has no importPath/],
      ['an unknown field in a file entry', task({ files: [{ path: '/src/m/a.go', sha256: h, size: 10, mode: 0o755 } as never, { path: '/tmp/w/b001/importcfg', sha256: h, size: 10 }] }), /a file entry has the field "mode"/]
    ]
    for (const [what, value, message] of cases) {
      assert.throws(() => validateTask(value, 'peerX'),
        (err: unknown) => errorCode(err) === 'GRID_ERR_TASK_INCOMPATIBLE' && message.test((err as Error).message) && /another grid version/.test((err as Error).message), what)
    }
    assert.equal(importPath, 'example.com/m')
  })

  it('keeps here a compile that peers would refuse, before it is offered', async (t) => {
    const dir = await tempDir(t, 'unshippable')
    await writeFile(join(dir, 'a.go'), 'package m\n')
    await writeFile(join(dir, 'importcfg'), '# import config\n')
    const args = (extra: string[]): string[] => ['-o', join(dir, '_pkg_.a'), '-p', 'm', '-nolocalimports', '-importcfg', join(dir, 'importcfg'), '-pack', ...extra, join(dir, 'a.go')]
    const build = async (extra: string[], env: Record<string, string>): Promise<unknown> => {
      const parsed = parseCompileArgs(args(extra), dir)
      assert.ok(!('unsupported' in parsed))
      return await buildTask(parsed, env, 'compile version go1.26.8', '/usr/local/go')
    }
    assert.ok('task' in (await build([], { GOOS: 'linux' }) as object), 'a plain compile goes')
    assert.match((await build([], { GOCOMPILEDEBUG: 'checkptr=1' }) as { unsupported: string }).unsupported, /GOCOMPILEDEBUG .* is not sent to peers/)
  })

  it('parses cmd/go compile arguments, keeping unknown flags local', () => {
    const p = parseCompileArgs(['-o', '/w/b1/_pkg_.a', '-trimpath', '/m=>x;/w/b1=>', '-p', 'x', '-lang=go1.24', '-complete', '-importcfg', '/w/b1/importcfg', '-pack', './a.go'], '/m')
    assert.ok(!('unsupported' in p))
    assert.deepEqual(p.sources, ['/m/a.go'])
    assert.deepEqual(p.flags, ['-p=x', '-lang=go1.24', '-complete', '-pack'])
    assert.deepEqual(p.inputFlags, { '-importcfg': '/w/b1/importcfg' })
    assert.equal(p.trimpath, '/m=>x;/w/b1=>')
    assert.deepEqual(parseCompileArgs(['-o', '/x.a', '-json=0,file:///tmp', 'a.go'], '/m'), { unsupported: 'flag -json' })
  })

  it('knows every flag the compiler reads a value for, from the compiler itself', () => {
    // `go tool compile -h` lists a flag that takes a value as `-name type`, any other alone
    const help = spawnSync('go', ['tool', 'compile', '-h'], { encoding: 'utf8' })
    const valued = [...`${help.stdout}${help.stderr}`.matchAll(/^ {2}(-\S+) \S+$/gm)].map(m => m[1])
    assert.ok(valued.includes('-o') && valued.includes('-D'), `read the compiler's flags: ${help.stderr.slice(0, 200)}`)
    assert.deepEqual([...COMPILE_VALUE_FLAGS].sort(), valued.sort())
  })

  it('reads a command line as the compiler does: a value is a value, flags end at the first file', () => {
    // -D and -I take a value, as every reader of the line must know (the history's -o check did not)
    assert.equal(outputOf(['-D', '-o', '-I', '-o', '-o', 'x.a', 'a.go'], '/w'), '/w/x.a')
    // flags end at the first file, or after `--`: what follows is a file to the compiler
    assert.deepEqual(parseCompileArgs(['-o', '/w/x.a', 'a.go', '-p', 'x'], '/m'), { unsupported: 'argument -p' })
    assert.equal(outputOf(['-o', 'x.a', '--', '-o', 'y.a'], '/w'), '/w/x.a')
    assert.deepEqual([...compileArgs(['--p=x', '-complete', '-c', '4', '-', '-o'])], [
      { kind: 'flag', name: '-p', norm: '-p=x', value: 'x', raw: ['--p=x'] },
      { kind: 'flag', name: '-complete', norm: '-complete', value: undefined, raw: ['-complete'] },
      { kind: 'flag', name: '-c', norm: '-c', value: '4', raw: ['-c', '4'] },
      { kind: 'file', arg: '-' },
      { kind: 'file', arg: '-o' }
    ])
    // a bare task flag the compiler reads as a boolean has no value to send
    assert.deepEqual(parseCompileArgs(['-o', '/w/x.a', '-dwarf', 'a.go'], '/m'), { unsupported: 'flag -dwarf without a value' })
  })

  it('points -o and -asmhdr elsewhere and leaves every other argument alone', () => {
    const to = { out: '/w/b1/_pkg_.a.r', asmhdr: '/w/b1/go_asm.h.r' }
    const args = ['-o', '/w/b1/_pkg_.a', '-trimpath', '/w/b1=>', '-p', 'x', '-asmhdr=/w/b1/go_asm.h', '-pack', 'a.go']
    assert.deepEqual(redirectOutputs(args, to),
      ['-o', '/w/b1/_pkg_.a.r', '-trimpath', '/w/b1=>', '-p', 'x', '-asmhdr=/w/b1/go_asm.h.r', '-pack', 'a.go'])
    assert.deepEqual(redirectOutputs(['--o=/w/b1/_pkg_.a', '--asmhdr', '/w/b1/go_asm.h', 'a.go'], to),
      ['-o=/w/b1/_pkg_.a.r', '-asmhdr', '/w/b1/go_asm.h.r', 'a.go'])
    // a flag's separate value is a value, whatever it looks like
    assert.deepEqual(redirectOutputs(['-p', '-o', '-o', '/w/b1/_pkg_.a', 'a.go'], to), ['-p', '-o', '-o', '/w/b1/_pkg_.a.r', 'a.go'])
  })

  it('builds the relocation rules in the order that keeps -trimpath outputs identical', () => {
    assert.equal(
      relocatedTrimpath('/S', '/usr/local/go/src/runtime/cgo=>runtime/cgo;/tmp/w/b003=>', ['/usr/local/go/src/runtime/cgo', '/tmp/w/b003', '/tmp/w/b004'], '/usr/local/go'),
      '/S/usr/local/go/src/runtime/cgo=>runtime/cgo;/S/tmp/w/b003=>;' +
      '/usr/local/go/src/runtime/cgo=>runtime/cgo;/tmp/w/b003=>;' +
      '/S/usr/local/go=>$GOROOT;/usr/local/go=>$GOROOT;' +
      '/S/usr=>/usr;/S/tmp=>/tmp')
  })

  it('leaves rules with an empty prefix out of the sandboxed rules, where they would match every input', () => {
    // the compiler skips such a rule; sandboxed (S + "" = S) it would rewrite everything
    assert.equal(relocatedTrimpath('/S', '=>x;/m=>m', ['/m'], '/g'), '/S/m=>m;=>x;/m=>m;/S/g=>$GOROOT;/g=>$GOROOT;/S/m=>/m')
  })

  it('strips a package archive to its export data', async (t) => {
    const { execFile } = await import('node:child_process')
    const dir = await tempDir(t, 'arch')
    const out = join(dir, 'fmt.a')
    await new Promise<void>((resolve, reject) => execFile('go', ['build', '-trimpath', '-o', out, 'errors'], { env: { ...process.env, GOFLAGS: '' } }, err => err === null ? resolve() : reject(err)))
    const full = await readFile(out)
    const stripped = exportDataOnly(full)
    assert.ok(stripped !== undefined)
    assert.ok(stripped.length < full.length)
    assert.ok(stripped.toString('latin1').startsWith('!<arch>\n__.PKGDEF'))
    assert.ok(!stripped.toString('latin1').includes('_go_.o'))
    assert.equal(exportDataOnly(Buffer.from('not an archive')), undefined)
  })
})

describe('worker sandboxes', () => {
  it('are reused with their directories, but hold no file of an earlier task', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'grid-sandbox-'))
    try {
      const blob = join(dir, 'blob')
      await writeFile(blob, 'package a\n')
      const boxes = new Sandboxes(join(dir, 'tasks'))
      const first = boxes.acquire()
      const second = boxes.acquire()
      assert.notEqual(first.root, second.root, 'tasks running at once get their own sandbox')
      first.link(blob, first.at('/src/m/a.go'))
      first.write(first.at('/tmp/w/b001/importcfg'), 'packagefile x=/y\n')
      const out = first.output(join(first.root, '_out_', '_pkg_.a'))
      await writeFile(out, 'archive') // what the compiler writes
      boxes.release(first)
      const again = boxes.acquire()
      assert.equal(again.root, first.root, 'a released sandbox is handed out again')
      assert.deepEqual(await readdir(again.at('/src/m')), [], 'its files are gone')
      assert.deepEqual(await readdir(join(again.root, '_out_')), [])
      assert.ok((await stat(again.at('/tmp/w/b001'))).isDirectory(), 'its directories stay')
      assert.equal(await readFile(blob, 'utf8'), 'package a\n', 'the blob a link pointed at is untouched')
      // a later task may need a file where an earlier one had a directory, and the other way
      again.write(again.at('/src/m'), 'a file now')
      assert.equal(await readFile(again.at('/src/m'), 'utf8'), 'a file now')
      boxes.release(again)
      const third = boxes.acquire()
      third.link(blob, third.at('/src/m/a.go'))
      assert.equal(await readFile(third.at('/src/m/a.go'), 'utf8'), 'package a\n')
      boxes.release(third)
      await boxes.reset()
      await assert.rejects(stat(join(dir, 'tasks')), 'reset removes every sandbox')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('do not keep a directory for every $WORK a task ever came from: past maxDirs a sandbox is replaced', async (t) => {
    const dir = await tempDir(t, 'sbx')
    const blob = join(dir, 'blob')
    await writeFile(blob, 'package a\n')
    const maxDirs = 12
    const boxes = new Sandboxes(join(dir, 'tasks'), maxDirs)
    // one task per build, as a helper serves builds one after another: the same sources, and
    // the importcfg and a dependency's export data in that build's own $WORK
    for (let build = 0; build < 60; build++) {
      const box = boxes.acquire()
      box.link(blob, box.at('/src/m/a.go'))
      box.write(box.at(`/tmp/go-build${build}/b001/importcfg`), 'packagefile dep=/x\n')
      box.link(blob, box.at(`/tmp/go-build${build}/b002/_pkg_.a`))
      box.output(join(box.root, '_out_', '_pkg_.a'))
      boxes.release(box)
    }
    // removal of a replaced sandbox runs in the background
    let dirs = 0
    await waitFor(async () => (dirs = await dirsUnder(join(dir, 'tasks'))) <= 2 * maxDirs, 10_000,
      () => `at most ${2 * maxDirs} directories under the sandboxes after 60 builds (${dirs})`)
    const box = boxes.acquire()
    assert.ok(box.dirCount <= maxDirs, `the sandbox handed out next knows ${box.dirCount} directories`)
    box.link(blob, box.at('/src/m/a.go'))
    assert.equal(await readFile(box.at('/src/m/a.go'), 'utf8'), 'package a\n', 'a fresh sandbox serves a task as well')
    boxes.release(box)
  })
})

/** Directories below `root`, at any depth. */
async function dirsUnder (root: string): Promise<number> {
  let n = 0
  for (const e of await readdir(root, { withFileTypes: true, recursive: true }).catch(() => [])) if (e.isDirectory()) n++
  return n
}
