// Three hosts of the lab office (network namespaces on one bridge), mDNS only: no bootstrap
// address anywhere, and every daemon finds the other two.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { it } from 'node:test'
import { tempDir, waitFor } from '../helpers/index.js'
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

// A partition: the two hosts cannot reach each other for a while (a switch between them fails,
// a VPN drops), then can again. Each had advertised 127.0.0.1 beside its LAN address; once the
// LAN address failed, its redial went on to 127.0.0.1:4770, reached the dialling node itself,
// failed the handshake, and took the other for a non-member: neither dialled the other again
// for 5 minutes.
it('2 lab hosts split by a partition connect again soon after it ends', { skip: skip ?? false }, async (t) => {
  const lab = await createLab(t, { hosts: 2, cpu: 0.5 })
  await lab.startAll(['--slots', '1'])
  const [h1, h2] = lab.hosts as [typeof lab.hosts[0], typeof lab.hosts[0]]
  const connected = async (h: typeof h1): Promise<boolean | undefined> => {
    const r = await lab.run(h.name, process.execPath, [LAB_GRID_BIN, '--json', 'peers'])
    if (r.code !== 0) return undefined
    return (JSON.parse(r.stdout) as Array<{ connected: boolean }>).some(p => p.connected)
  }
  const route = (op: 'add' | 'del'): void => {
    for (const [from, to] of [[h1, h2], [h2, h1]] as const) execFileSync('ip', ['-n', from.netns, 'route', op, 'prohibit', `${to.ip}/32`])
  }
  await waitFor(async () => await connected(h1) === true && await connected(h2) === true, 30_000, () => 'the two hosts to connect')
  route('add')
  try {
    // libp2p's connection monitor closes the dead connection; the redials (every second) fail
    await waitFor(async () => await connected(h1) === false && await connected(h2) === false, 30_000, () => 'the partition to close the connection')
    await new Promise(resolve => setTimeout(resolve, 3_000))
  } finally {
    route('del')
  }
  await waitFor(async () => await connected(h1) === true && await connected(h2) === true, 30_000, () => 'the two hosts to connect again after the partition')
})

// A helper on 10 Mbit/s Wi-Fi beside one on the gigabit LAN: when a build begins, h1 measures
// the link of each helper it has not timed (docs/remote.md, "Links"), so that its first long
// pole does not go to the slow one; `grid peers` shows what it found. Over the slow link the
// archives come back packed and the inputs go packed (docs/remote.md, "The stream"), over the
// fast one as they are.
it('a requester times each helper\'s link when a build begins: 10 Mbit/s apart from 1 Gbit, and the slow one packs its archives', { skip: skip ?? false }, async (t) => {
  const lab = await createLab(t, { hosts: 3, cpu: 'max' })
  const [h1, h2, h3] = lab.hosts as [typeof lab.hosts[0], typeof lab.hosts[0], typeof lab.hosts[0]]
  for (const [netns, dev] of [[h3.netns, 'eth0'], [`${lab.prefix}-sw`, 'h3']] as const) {
    execFileSync('tc', ['-n', netns, 'qdisc', 'change', 'dev', dev, 'root', 'tbf', 'rate', '10mbit', 'burst', '256kb', 'latency', '5ms'])
  }
  for (const h of [h2, h3]) await lab.start(h.name, ['--slots', '1', '--accept-remote', 'always'])
  await lab.start(h1.name, ['--slots', '1', '--offload', 'always'])
  const id = async (h: typeof h1): Promise<string> => JSON.parse((await lab.run(h.name, process.execPath, [LAB_GRID_BIN, '--json', 'status'])).stdout).nodeId
  const [fast, slow] = [await id(h2), await id(h3)]
  type Peer = { peerId: string, remote: { msPerByte?: number } }
  let peers: Peer[] = []
  await waitFor(async () => {
    // every build's beginning looks for peers to time (h1 may still be probing its own toolchain)
    const build = await lab.run(h1.name, process.execPath, [LAB_GRID_BIN, 'build', 'unsafe'])
    assert.equal(build.code, 0, build.stderr)
    const r = await lab.run(h1.name, process.execPath, [LAB_GRID_BIN, '--json', 'peers'])
    peers = r.code === 0 ? JSON.parse(r.stdout) : []
    return peers.filter(p => p.remote.msPerByte !== undefined).length === 2
  }, 60_000, () => `h1 to time both helpers' links (last: ${JSON.stringify(peers.map(p => [p.peerId, p.remote]))})`)
  // what --json gives of h1's compiles there: the documented fields, not the scheduler's score
  for (const p of peers) assert.deepEqual(Object.keys(p.remote).filter(k => !['ok', 'failed', 'speed', 'msPerByte', 'packed'].includes(k)), [], JSON.stringify(p.remote))
  const mbs = (peerId: string): number => 1 / (peers.find(p => p.peerId === peerId)?.remote.msPerByte as number) / 1000
  assert.ok(mbs(slow) > 0.5 && mbs(slow) < 3, `the 10 Mbit/s helper at ${mbs(slow).toFixed(2)} MB/s`)
  assert.ok(mbs(fast) > 8, `the 1 Gbit helper at ${mbs(fast).toFixed(2)} MB/s`)
  const text = await lab.run(h1.name, process.execPath, [LAB_GRID_BIN, 'peers'])
  assert.match(text.stdout, /LINK/)
  assert.match(text.stdout.split('\n').find(l => l.startsWith(slow)) ?? '', / \d\.\d MB\/s /)

  // h1 sends every compile it can (--offload always): to the gigabit helper first, whose
  // archives come as they are; with it gone, to the one on Wi-Fi, whose archives come packed
  const worker = async (h: typeof h1): Promise<{ ran: number, packed?: number, unpacked?: number } | undefined> =>
    JSON.parse((await lab.run(h.name, process.execPath, [LAB_GRID_BIN, '--json', 'status'])).stdout).mesh?.worker
  const build = async (pkg: string): Promise<void> => {
    const built = await lab.run(h1.name, 'env', [`GOCACHE=${await tempDir(t, 'gocache')}`, process.execPath, LAB_GRID_BIN, '--json', 'build', pkg])
    assert.equal(built.code, 0, built.stderr)
    assert.ok(JSON.parse(built.stdout).compiles.remote > 0, built.stdout)
  }
  await build('strconv')
  const onLan = await worker(h2)
  assert.ok(onLan !== undefined && onLan.ran > 0 && onLan.packed === 0 && onLan.unpacked === 0, `the gigabit helper: ${JSON.stringify(onLan)}`)
  const before = await worker(h3)
  await lab.stop(h2.name)
  await waitFor(async () => {
    const r = await lab.run(h1.name, process.execPath, [LAB_GRID_BIN, '--json', 'peers'])
    return r.code === 0 && !(JSON.parse(r.stdout) as Array<{ peerId: string, connected: boolean }>).some(p => p.peerId === fast && p.connected)
  }, 30_000, () => 'h1 to see the gigabit helper gone')
  await build('go/scanner') // strconv's imports are in h1's cache now: the others compile
  const onWifi = await worker(h3)
  assert.ok(onWifi !== undefined && (onWifi.packed ?? 0) > (before?.packed ?? 0) && onWifi.packed === onWifi.ran, `the helper on Wi-Fi: ${JSON.stringify(onWifi)}`)
  // and h1 sent it the inputs packed (its advert says it unpacks them): every task has a source
  // file big enough to pack, unless the helper held all of them already
  assert.ok((onWifi.unpacked ?? 0) > (before?.unpacked ?? 0), `the helper on Wi-Fi unpacked inputs: ${JSON.stringify(onWifi)}`)
})
