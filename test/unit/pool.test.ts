// The local pool's compilers (packages/node/src/worker/pool.ts): the real compiler, started
// with the pool's starting heap, writes the same archive as without it.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { LocalPool, withStartHeap } from '@grid/node/server'
import { tempDir } from '../helpers/index.js'

const compiler = join(execFileSync('go', ['env', 'GOTOOLDIR'], { encoding: 'utf8' }).trim(), process.platform === 'win32' ? 'compile.exe' : 'compile')

/** The heap goal the compiler reports with `-d=gcadjust=1` when it adjusts its start. */
function goalMB (output: Buffer): number {
  const m = /current goal (\d+)MB/.exec(output.toString())
  assert.ok(m !== null, `no GC adjustment in the compiler's output: ${output.toString()}`)
  return Number(m[1])
}

describe('local pool', () => {
  it('puts the starting heap first among the compiler\'s arguments, so a later -d still wins', () => {
    assert.deepEqual(withStartHeap(['-o', 'x.a', '-d=ssa/check/on', 'x.go'], 512), ['-d=gcstart=512', '-o', 'x.a', '-d=ssa/check/on', 'x.go'])
    assert.deepEqual(withStartHeap(['-o', 'x.a'], 0), ['-o', 'x.a'])
  })

  it('starts the compiler with its starting heap; the archive is byte-identical to the compiler\'s default', async (t) => {
    const dir = await tempDir(t, 'grid-pool')
    await writeFile(join(dir, 'p.go'), 'package p\n\nfunc F(x int) int { return x * 2 }\n')
    // -c=2 as cmd/go passes it: with -c=1 (a one-core machine's default) the compiler keeps
    // plain GOGC and reports no adjustment of its own
    const compile = async (startHeapMB: number, out: string): Promise<{ archive: Buffer, goal: number }> => {
      const pool = new LocalPool({ slots: 1, startHeapMB })
      const ran = await pool.run({ tool: compiler, args: ['-p', 'p', '-c=2', '-trimpath', dir, '-o', join(dir, out), '-d=gcadjust=1', 'p.go'], cwd: dir, env: {} })
      assert.equal(ran.exitCode, 0, ran.output.toString())
      return { archive: await readFile(join(dir, out)), goal: goalMB(ran.output) }
    }
    const own = await compile(0, 'default.a')
    const raised = await compile(512, 'raised.a')
    assert.ok(raised.goal >= 2 * own.goal, `heap goal ${raised.goal} MB with a 512 MiB start, ${own.goal} MB by default`)
    assert.ok(own.archive.equals(raised.archive), 'the same archive either way')
  })
})
