// What a user sees when the node refuses a request: its code, its message and its hint, as the
// CLI shows its own errors (text on stderr; with --json, on stdout with every key present). The
// real CLI against a real control server on a Unix socket, whose handler fails as the node's does.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { GridError } from '@grid/protocol'
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

  it('a node that does not answer: the hint does not send the user to grid stop, which needs an answer too', async (t) => {
    // Regression: the hint said "stop or kill it", also to the user whose grid stop had timed out.
    const { dir, control } = await refusingNode(t, 'hang')
    const json = await cli(dir, control, ['--json', 'stop'], { GRID_TEST_ANSWER_MS: '5000' })
    assert.equal(json.code, 1)
    const { error } = JSON.parse(json.stdout) as { error: { code: string, hint: string } }
    assert.equal(error.code, 'GRID_ERR_TIMEOUT')
    assert.match(error.hint, /kill -9 PID/)
    assert.doesNotMatch(error.hint, /stop or kill/)
  })
})
