// What a user sees when the node refuses a request: its code, its message and its hint, as the
// CLI shows its own errors (text on stderr; with --json, on stdout with every key present). The
// real CLI against a real control server on a Unix socket, whose handler fails as the node's does.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { GridError } from '@grid/protocol'
import { closeLogging, configureLogging } from '@grid/node'
import { ControlServer } from '@grid/node/server'
import { GRID_BIN, run, tempDir } from '../helpers/index.js'

async function refusingNode (t: Parameters<typeof tempDir>[0], error: Error | 'hang'): Promise<{ dir: string, control: string }> {
  const dir = await tempDir(t, 'cerr')
  const server = new ControlServer({ path: join(dir, 'g.sock'), handler: async () => { if (error === 'hang') await new Promise(() => {}); throw error } })
  await server.start()
  t.after(async () => { await server.stop() })
  return { dir, control: server.path }
}

async function cli (dir: string, control: string, args: string[], extra: NodeJS.ProcessEnv = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, GRID_CACHE: join(dir, 'grid'), GRID_CONTROL: control, GRID_CONFIG: '', ...extra }
  delete env.DEBUG
  return await run(process.execPath, [GRID_BIN, ...args], { cwd: dir, env, timeoutMs: 30_000 })
}

describe('errors the node sends back', () => {
  it('a node\'s refusal reaches the user with its hint, in text and in --json', async (t) => {
    const { dir, control } = await refusingNode(t, new GridError('GRID_ERR_CACHE_OPEN', 'cannot trim the cache: the disk is full', {
      hint: 'free some space on the cache dir\'s disk'
    }))
    const text = await cli(dir, control, ['cache', 'gc', '--max-size', '1G'])
    assert.equal(text.code, 1)
    assert.match(text.stderr, /^grid: cannot trim the cache: the disk is full \(GRID_ERR_CACHE_OPEN\)$/m)
    assert.match(text.stderr, /^ {2}hint: free some space on the cache dir's disk$/m, text.stderr)

    const json = await cli(dir, control, ['--json', 'cache', 'gc', '--max-size', '1G'])
    assert.equal(json.code, 1)
    assert.deepEqual(JSON.parse(json.stdout), {
      error: { code: 'GRID_ERR_CACHE_OPEN', message: 'cannot trim the cache: the disk is full', hint: 'free some space on the cache dir\'s disk' }
    })
  })

  it('with --json, an error without a hint still has the key, null (as the README documents)', async (t) => {
    const { dir, control } = await refusingNode(t, new GridError('GRID_ERR_MESSAGE_INVALID', 'no active build b1'))
    const json = await cli(dir, control, ['--json', 'status'])
    assert.equal(json.code, 1)
    assert.deepEqual(JSON.parse(json.stdout), { error: { code: 'GRID_ERR_MESSAGE_INVALID', message: 'no active build b1', hint: null } })
    const text = await cli(dir, control, ['status'])
    assert.equal(text.code, 1)
    assert.doesNotMatch(text.stderr, /hint/)
  })

  it('a node that does not answer: the hint names its log file and its pid, so that its kill -9 can be pasted, and does not send the user to grid stop', async (t) => {
    // Regression: the hint said "stop or kill it", also to the user whose grid stop had timed out;
    // and it named "<cache>/logs/grid.log" and "kill -9 PID", for the user to fill in.
    const log = join(await tempDir(t, 'clog'), 'logs', 'grid.log')
    configureLogging({ stderr: 'silent', file: log }) // this process runs the node: its log
    t.after(async () => { await closeLogging() })
    const { dir, control } = await refusingNode(t, 'hang')
    const json = await cli(dir, control, ['--json', 'stop'], { GRID_TEST_ANSWER_MS: '5000' })
    assert.equal(json.code, 1)
    const { error } = JSON.parse(json.stdout) as { error: { code: string, hint: string } }
    assert.equal(error.code, 'GRID_ERR_TIMEOUT')
    assert.ok(error.hint.includes(`its log (${log}) says what it last did`), error.hint)
    assert.ok(error.hint.includes(`kill -9 ${process.pid} ends it`), error.hint)
    assert.doesNotMatch(error.hint, /stop or kill/)

    // A record beside the socket that another socket's node left (it died, and this one made the
    // socket anew) names neither its pid nor its log.
    const record = JSON.parse(await readFile(`${control}.json`, 'utf8')) as { pid: number, log: string, socket: string }
    assert.equal(record.pid, process.pid)
    const other = { pid: process.ppid, log: join(dir, 'other.log'), socket: `${record.socket}0` }
    await writeFile(`${control}.json`, JSON.stringify(other))
    const stale = await cli(dir, control, ['--json', 'status'], { GRID_TEST_ANSWER_MS: '5000' })
    const { hint } = (JSON.parse(stale.stdout) as { error: { hint: string } }).error
    assert.match(hint, /kill -9 PID ends it/)
    assert.ok(!hint.includes(String(other.pid)) && !hint.includes(other.log), hint)
  })
})
