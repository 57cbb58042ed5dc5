// Three hosts of the lab office (network namespaces on one bridge), mDNS only: no bootstrap
// address anywhere, and every daemon finds the other two.
import assert from 'node:assert/strict'
import { it } from 'node:test'
import { waitFor } from '../helpers/index.js'
import { LAB_GRID_BIN, createLab, labAvailable } from '../helpers/lab.js'

const skip = await labAvailable()

it('3 lab hosts with mDNS only discover each other', { skip: skip ?? false }, async (t) => {
  const lab = await createLab(t, { hosts: 3, cpu: 0.5 })
  // Default listen address (all interfaces, port 4770) and mDNS on: the office defaults.
  await lab.startAll(['--slots', '1'])
  const ids: string[] = []
  for (const h of lab.hosts) {
    const r = await lab.run(h.name, process.execPath, [LAB_GRID_BIN, '--json', 'status'])
    assert.equal(r.code, 0, r.stderr)
    const s = JSON.parse(r.stdout)
    assert.equal(s.mesh.mdns, true)
    assert.ok(s.mesh.addrs.some((a: string) => a.startsWith(`/ip4/${h.ip}/tcp/4770/p2p/`)), s.mesh.addrs.join(' '))
    ids.push(s.nodeId)
  }
  for (const [i, h] of lab.hosts.entries()) {
    const others = ids.filter((_, j) => j !== i).sort()
    let last = ''
    await waitFor(async () => {
      const r = await lab.run(h.name, process.execPath, [LAB_GRID_BIN, '--json', 'peers'])
      last = r.stdout + r.stderr
      if (r.code !== 0) return false
      const peers = (JSON.parse(r.stdout) as Array<{ peerId: string, connected: boolean }>)
      return peers.filter(p => p.connected).map(p => p.peerId).sort().join() === others.join()
    }, 30_000, () => `${h.name} to find the other two by mDNS (last: ${last})`)
  }
})
