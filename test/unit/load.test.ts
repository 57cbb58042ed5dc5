// The workstation's own load for `--accept-remote idle`: the kernel's 1-minute load average less
// this node's compiles for peers, averaged as the kernel averages them. A stand-in kernel here
// counts the same processes with the same formula (calc_load: a sample every 5 s, the 1-minute
// decay), plus whatever the workstation's owner runs.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { IDLE_LOAD_PER_CORE, LOAD_SAMPLE_MS, LOAD_WINDOW_MS, OwnLoad } from '@grid/node/server'

/** A kernel's load average over `owner` runnable processes of the owner's and the node's peer compiles. */
function machine (cores: number): { load: OwnLoad, run: (seconds: number, peerCompiles: number, owner: number) => void, kernel: () => number } {
  let peers = 0
  let kernel = 0
  const load = new OwnLoad({ cores, peerCompiles: () => peers, loadavg: () => kernel })
  const decay = Math.exp(-LOAD_SAMPLE_MS / LOAD_WINDOW_MS)
  return {
    load,
    kernel: () => kernel,
    run (seconds, peerCompiles, owner) {
      peers = peerCompiles
      for (let t = 0; t < seconds * 1000; t += LOAD_SAMPLE_MS) {
        kernel = kernel * decay + (peerCompiles + owner) * (1 - decay)
        load.sample()
      }
    }
  }
}

describe('OwnLoad', () => {
  it('a helper whose every slot the mesh keeps busy still counts as idle', () => {
    const m = machine(4)
    m.run(120, 4, 0) // one compile per core for two minutes, nothing of the owner's
    assert.ok(m.kernel() / 4 > IDLE_LOAD_PER_CORE, `the premise: the kernel's load (${m.kernel() / 4} per core) is over the idle line`)
    assert.ok(m.load.perCore() < 0.01, `own load ${m.load.perCore()}`)
    assert.ok(Math.abs(m.load.peerLoad - m.kernel()) < 1e-9)
  })

  it('the owner\'s own work still counts, with the peers\' compiles running beside it', () => {
    const m = machine(4)
    m.run(120, 2, 3) // the owner builds on three cores while two peer compiles run
    assert.ok(Math.abs(m.load.perCore() - (m.kernel() - m.load.peerLoad) / 4) < 1e-9)
    assert.ok(m.load.perCore() > IDLE_LOAD_PER_CORE, `own load ${m.load.perCore()}`)
    assert.ok(m.load.perCore() < 3 / 4 + 1e-9)
  })

  it('falls as the kernel\'s does once the peers\' compiles stop, and never below 0', () => {
    const m = machine(2)
    m.run(60, 2, 0)
    const before = m.load.peerLoad
    m.run(60, 0, 0)
    assert.ok(Math.abs(m.load.peerLoad - before * Math.exp(-1)) < 1e-9, `${m.load.peerLoad} after a minute, from ${before}`)
    const low = new OwnLoad({ cores: 2, peerCompiles: () => 2, loadavg: () => 0.1 })
    low.sample()
    assert.equal(low.perCore(), 0)
  })

  it('reads the kernel\'s load average when given none', () => {
    const load = new OwnLoad({ cores: 1, peerCompiles: () => 0 })
    assert.ok(Number.isFinite(load.perCore()) && load.perCore() >= 0)
  })
})
