// The local pool's compilers (packages/node/src/worker/pool.ts): the real compiler, started
// with the pool's starting heap and its share of the slots as backend concurrency, writes the
// same archive as without them.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { describe, it } from 'node:test'
import { LocalPool, takesStartHeap, withConcurrency, withStartHeap } from '@grid/node/server'
import { errorCode } from '@grid/protocol'
import { tempDir } from '../helpers/index.js'

const compiler = join(execFileSync('go', ['env', 'GOTOOLDIR'], { encoding: 'utf8' }).trim(), process.platform === 'win32' ? 'compile.exe' : 'compile')
/** The compiler's release, as cmd/go passes it with `-goversion` (the compiler refuses another). */
const goversion = execFileSync('go', ['env', 'GOVERSION'], { encoding: 'utf8' }).trim()

/** The heap goal the compiler reports with `-d=gcadjust=1` when it adjusts its start. */
function goalMB (output: Buffer): number {
  const m = /current goal (\d+)MB/.exec(output.toString())
  assert.ok(m !== null, `no GC adjustment in the compiler's output: ${output.toString()}`)
  return Number(m[1])
}

describe('local pool', () => {
  it('puts the starting heap first among the compiler\'s arguments, so a later -d still wins', () => {
    const args = ['-o', 'x.a', '-goversion', 'go1.26.8', '-d=ssa/check/on', 'x.go']
    assert.deepEqual(withStartHeap(args, 512), ['-d=gcstart=512', ...args])
    assert.deepEqual(withStartHeap(args, 0), args)
  })

  it('gives no starting heap to a compiler before Go 1.26, which refuses -d=gcstart and compiles nothing', () => {
    for (const version of ['go1.24.0', 'go1.25.5', 'go1.25rc1']) {
      for (const args of [['-p', 'p', '-goversion', version, 'x.go'], ['-p', 'p', `-goversion=${version}`, 'x.go']]) {
        assert.deepEqual(withStartHeap(args, 512), args, version)
        assert.equal(takesStartHeap(args), false, version)
      }
    }
    for (const version of ['go1.26.0', 'go1.26rc2', 'go1.27.1', 'go1.26.8 X:nodwarf5']) {
      assert.equal(takesStartHeap(['-goversion', version, 'x.go']), true, version)
    }
    // no -goversion: a devel toolchain (cmd/go passes none), whose compiler may predate the flag
    assert.equal(takesStartHeap(['-p', 'p', 'x.go']), false)
    assert.equal(takesStartHeap(['-p', 'p', '-goversion']), false)
  })

  it('lowers cmd/go\'s -c to the share of the slots, never raises it, adds none', () => {
    assert.deepEqual(withConcurrency(['-p', 'p', '-c=4', 'x.go'], 1), ['-p', 'p', '-c=1', 'x.go'])
    assert.deepEqual(withConcurrency(['-c=2', 'x.go'], 4), ['-c=2', 'x.go'])
    assert.deepEqual(withConcurrency(['-p', 'p', 'x.go'], 1), ['-p', 'p', 'x.go'])
    assert.deepEqual(withConcurrency(['-c=many', 'x.go'], 1), ['-c=many', 'x.go'])
    assert.deepEqual(withConcurrency(['-c=4'], 0), ['-c=4'])
  })

  it('shares its slots among the compiles holding one', async () => {
    const pool = new LocalPool({ slots: 4 })
    const shares: number[] = []
    const leases = []
    for (let i = 0; i < 4; i++) {
      leases.push(await pool.lease())
      shares.push(pool.concurrency())
    }
    assert.deepEqual(shares, [4, 2, 1, 1])
    for (const free of leases) free()
  })

  it('starts the workstation\'s own compiles beside peers\' tasks, never behind them', async () => {
    const pool = new LocalPool({ slots: 2 })
    const changes: number[] = []
    pool.onChange = () => changes.push(pool.running)
    const settled = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }
    const guest1 = await pool.lease({ guest: true })
    const guest2 = await pool.lease({ guest: true })
    assert.equal(pool.free, true, 'slots that only guests hold are free for an own compile')
    const own1 = await pool.lease()
    const own2 = await pool.lease()
    assert.equal(pool.running, 4)
    assert.equal(pool.free, false)
    assert.equal(pool.concurrency(), 1)
    const started = { own3: false, guest3: false }
    const own3 = pool.lease({ priority: 1 }).then(free => { started.own3 = true; return free })
    const guest3 = pool.lease({ guest: true }).then(free => { started.guest3 = true; return free })
    assert.equal(pool.queued, 2)
    guest1()
    guest2()
    await settled()
    assert.equal(started.own3, false, 'an own compile waits only for an own one')
    assert.equal(started.guest3, false, 'a guest waits for a free slot')
    own1()
    await settled()
    assert.equal(started.own3, true)
    assert.equal(started.guest3, false, 'no slot is free: two own compiles hold both')
    own2()
    await settled()
    assert.equal(started.guest3, true)
    assert.equal(pool.running, 2)
    ;(await own3)()
    ;(await guest3)()
    assert.equal(pool.running, 0)
    assert.deepEqual(changes, [1, 2, 3, 4, 3, 2, 1, 0], 'adverts follow the slots taken and freed, not the hand-overs')
  })

  it('a compiler killed by a signal it was not sent is an error (GRID_ERR_COMPILE_KILLED), not a failed compile', async (t) => {
    // The OOM killer, a daemon stopping with its process group: the compiler said nothing of
    // the package. As exit status 1 a peer's came back as a failed compile, and its requester,
    // finding the package clean, took the peer for a liar.
    const dir = await tempDir(t, 'grid-pool')
    const tool = join(dir, 'pkg', 'tool', 'linux_amd64', 'compile')
    await mkdir(dirname(tool), { recursive: true })
    await writeFile(tool, '#!/bin/sh\nkill -KILL $$\n', { mode: 0o755 })
    const pool = new LocalPool({ slots: 1 })
    await assert.rejects(pool.run({ tool, args: ['-p', 'p', 'p.go'], cwd: dir, env: {} }), (err: Error) => errorCode(err) === 'GRID_ERR_COMPILE_KILLED' && /SIGKILL/.test(err.message))
    assert.equal(pool.running, 0, 'its slot is free again')
  })

  it('starts the compiler with its starting heap; the archive is byte-identical to the compiler\'s default', async (t) => {
    const dir = await tempDir(t, 'grid-pool')
    await writeFile(join(dir, 'p.go'), 'package p\n\nfunc F(x int) int { return x * 2 }\n')
    // -c=2 as cmd/go passes it, in a pool of two slots that leaves it so: with -c=1 (a
    // one-core machine's default) the compiler keeps plain GOGC and reports no adjustment
    const compile = async (startHeapMB: number, out: string): Promise<{ archive: Buffer, goal: number }> => {
      const pool = new LocalPool({ slots: 2, startHeapMB })
      const ran = await pool.run({ tool: compiler, args: ['-p', 'p', '-c=2', '-goversion', goversion, '-trimpath', dir, '-o', join(dir, out), '-d=gcadjust=1', 'p.go'], cwd: dir, env: {} })
      assert.equal(ran.exitCode, 0, ran.output.toString())
      return { archive: await readFile(join(dir, out)), goal: goalMB(ran.output) }
    }
    const own = await compile(0, 'default.a')
    const raised = await compile(512, 'raised.a')
    assert.ok(raised.goal >= 2 * own.goal, `heap goal ${raised.goal} MB with a 512 MiB start, ${own.goal} MB by default`)
    assert.ok(own.archive.equals(raised.archive), 'the same archive either way')
  })

  it('runs the compiler with -c=1 in a pool of one slot; the archive is byte-identical', async (t) => {
    const dir = await tempDir(t, 'grid-pool')
    await writeFile(join(dir, 'p.go'), 'package p\n\nfunc F(x int) int { return x * 3 }\n')
    // With its default heap the compiler adjusts its collector only when -c is above 1: the
    // report of that adjustment shows which -c it ran with.
    const compile = async (slots: number, out: string): Promise<{ archive: Buffer, adjusted: boolean }> => {
      const pool = new LocalPool({ slots, startHeapMB: 0 })
      const ran = await pool.run({ tool: compiler, args: ['-p', 'p', '-c=2', '-trimpath', dir, '-o', join(dir, out), '-d=gcadjust=1', 'p.go'], cwd: dir, env: {} })
      assert.equal(ran.exitCode, 0, ran.output.toString())
      return { archive: await readFile(join(dir, out)), adjusted: /GCAdjust/.test(ran.output.toString()) }
    }
    const two = await compile(2, 'two.a')
    const one = await compile(1, 'one.a')
    assert.equal(two.adjusted, true, 'with two slots the compiler keeps -c=2')
    assert.equal(one.adjusted, false, 'with one slot it runs with -c=1')
    assert.ok(one.archive.equals(two.archive), 'the same archive either way')
  })
})
