/**
 * `grid daemon`: a long-lived node on the control socket and in the mesh, until SIGINT, SIGTERM,
 * SIGHUP or `grid stop`; with --detach, started in the background once its flags are checked here.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, openSync } from 'node:fs'
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { DEFAULT_PORT, PEER_TIMEOUT_MS, closeLogging, configureLogging, prepareCacheDir } from '@grid/node'
import { compileHeapFlag, meshOptions, nodeConfig } from '../mesh-options.js'
import type { GlobalOptions } from '../options.js'
import { noArguments, parseFlags, sizeFlag, usageError, withoutFlag } from '../options.js'
import { lastError, type Output } from '../output.js'
import { connectNode } from '../session.js'
import { LOCKED_WAIT_MS } from './status.js'
import { GridError, MAX_SLOTS, type NodeStatus } from '@grid/protocol'

export const DAEMON_HELP = `usage: grid [global options] daemon [flags]

Runs a grid node in the foreground: it serves builds on the control socket, keeps the cache
index open and joins the office mesh. Logs go to stderr and to <cache>/logs/grid.log (grid
status names that file, --detach prints it). Stops on SIGINT, SIGTERM, SIGHUP (its terminal
closed) or grid stop. To start it at login, see "The daemon" in the README.

  --detach                  start the daemon in the background and return once it answers
                            (in the mesh, unless --no-mesh); what it prints goes to
                            <cache>/logs/daemon.out

  --listen MULTIADDR        listen address, repeatable (default /ip4/0.0.0.0/tcp/${DEFAULT_PORT})
  --bootstrap MULTIADDR     a member to dial, repeatable (with or without /p2p/<id>);
                            added to "bootstrap" in the config file
  --no-mdns                 do not discover peers with mDNS on the LAN
  --swarm-key FILE          talk only to nodes holding this key (default: the config's
                            "swarmKey", else swarm.key beside the config file, i.e.
                            ~/.config/grid/swarm.key, if it exists; see grid init)
  --accept-remote POLICY    always | idle | never: whether this node takes compiles from peers
                            (idle: only while the workstation's own load is low; default idle)
  --slots N                 local compile slots (default: the number of cores, at most
                            ${MAX_SLOTS}); a compile runs with its share of them as backend
                            threads (go's -c, lowered)
  --trust mesh|self         cache entries to accept from peers: signed by any member (mesh,
                            default) or none, only this node's own (self)
  --verify PERCENT          re-check this share of the entries peers offer by compiling locally
                            and comparing; a mismatch marks the producer untrusted (default 0)
  --cache-max SIZE          trim the cache, least recently used first, past SIZE (e.g. 20G)
  --offload POLICY          never | busy | always: when this node's builds send compiles to
                            idle peers (busy, default: while every local slot is taken)
  --task-memory SIZE        address space a peer's compile may use here (ulimit -v; default
                            4G, at least 1G)
  --compile-heap SIZE       heap the compilers this node runs grow to before their first
                            collection (their -d=gcstart; default 512M, 0: the compiler's own
                            128M); output is the same, large packages take less CPU
  --no-mesh                 serve this machine only: no libp2p at all

Peers whose adverts stop for ${PEER_TIMEOUT_MS / 1000} s are dropped; a peer that goes away is
redialled with backoff, bootstrap addresses for as long as the daemon runs.`

export async function daemon (args: string[], options: GlobalOptions, output: Output): Promise<number> {
  const { flags, positional } = parseFlags('daemon', args, {
    slots: 'string', listen: 'list', bootstrap: 'list', 'no-mdns': 'bool', 'swarm-key': 'string', 'accept-remote': 'string', 'no-mesh': 'bool',
    trust: 'string', verify: 'string', 'cache-max': 'string', offload: 'string', 'task-memory': 'string', 'compile-heap': 'string', detach: 'bool'
  })
  noArguments('daemon', positional)
  const config = await nodeConfig(options)
  const slots = flags.slots === undefined ? config.slots : /^\d+$/.test(flags.slots) ? Number(flags.slots) : NaN
  if (slots !== undefined && (!Number.isInteger(slots) || slots < 1)) throw usageError(`--slots must be a positive integer, got ${flags.slots}`, 'run `grid daemon --help` for the values')
  // every member refuses an advert of more (decodeAdvert): the node would be listed by none
  if (slots !== undefined && slots > MAX_SLOTS) throw usageError(`--slots must be at most ${MAX_SLOTS}, got ${slots}`, 'run `grid daemon --help` for the values')
  const mesh = await meshOptions(config, options.configPath, {
    ...(flags.listen === undefined ? {} : { listen: flags.listen }),
    ...(flags.bootstrap === undefined ? {} : { bootstrap: flags.bootstrap }),
    ...(flags['swarm-key'] === undefined ? {} : { swarmKey: flags['swarm-key'] }),
    ...(flags['accept-remote'] === undefined ? {} : { acceptRemote: flags['accept-remote'] }),
    ...(flags.trust === undefined ? {} : { trust: flags.trust }),
    ...(flags.verify === undefined ? {} : { verify: flags.verify }),
    ...(flags.offload === undefined ? {} : { offload: flags.offload }),
    ...(flags['task-memory'] === undefined ? {} : { taskMemory: flags['task-memory'] }),
    noMdns: flags['no-mdns'] === true,
    noMesh: flags['no-mesh'] === true
  })
  const cacheMax = flags['cache-max'] !== undefined ? sizeFlag(flags['cache-max'], '--cache-max') : config.cacheMax
  if (cacheMax === 0) throw usageError('--cache-max must be more than 0', 'e.g. --cache-max 20G (grid cache gc --max-size 0 empties the cache once)')
  const compileHeapMB = flags['compile-heap'] !== undefined ? await compileHeapFlag(flags['compile-heap']) : config.compileHeapMB
  await refuseIfRunning(options)
  await prepareCacheDir(options.cacheDir)
  if (process.env[DETACHED_ENV] !== '1') await warnIfKeyReadable(mesh?.swarmKeyFile, output)
  // The daemon it starts gets the same flags but --detach, in whatever form it was given; and
  // one started so never detaches again, whatever its flags.
  if (flags.detach === true && process.env[DETACHED_ENV] !== '1') return await detach(withoutFlag(args, 'detach'), mesh !== undefined, options, output)
  // A detached daemon's stderr is a file nobody trims: its log goes to grid.log only.
  const detached = process.env[DETACHED_ENV] === '1'
  delete process.env[DETACHED_ENV] // not for the go commands and compilers it runs
  configureLogging({ stderr: detached ? 'silent' : 'info', file: join(options.cacheDir, 'logs', 'grid.log') })
  const { GridNode } = await import('@grid/node/server')
  const node = new GridNode({
    cacheDir: options.cacheDir,
    control: options.control,
    mode: 'daemon',
    ...(slots === undefined ? {} : { slots }),
    ...(compileHeapMB === undefined ? {} : { compileHeapMB }),
    ...(mesh === undefined ? {} : { mesh }),
    ...(cacheMax === undefined ? {} : { cacheMax })
  })
  await node.start()
  const status = await node.status()
  if (options.json) output.out(JSON.stringify({ nodeId: node.nodeId, control: node.control, cacheDir: node.cacheDir, pid: process.pid, mesh: status.mesh }))
  else {
    output.err(`grid daemon ${node.nodeId} serving ${node.control} (cache ${node.cacheDir}, ${node.pool.slots} slots)`)
    if (status.mesh !== null) output.err(`mesh: swarm ${status.mesh.swarm}, listening on\n  ${status.mesh.addrs.join('\n  ')}`)
    warnIfOpen(status, output)
  }
  await new Promise<void>(resolve => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
    // The terminal it runs in was closed: stop as for SIGTERM (its socket removed, its peers
    // told), not as Node's default for SIGHUP would, killed where it stands.
    process.once('SIGHUP', resolve)
    void node.shutdownRequested.then(resolve)
  })
  await node.stop()
  await closeLogging()
  return 0
}

/** Set in the environment of a daemon that `grid daemon --detach` started. */
const DETACHED_ENV = 'GRID_DAEMON_DETACHED'
/** How long --detach waits for its daemon: opening the cache, the toolchain probe, the mesh. */
const DETACH_TIMEOUT_MS = 60_000
const POLL_MS = 100

/** A second daemon on the same socket would only fail later, on the cache lock: say so now. */
async function refuseIfRunning (options: GlobalOptions): Promise<void> {
  const running = await statusOf(options)
  if (running !== undefined) throw alreadyRunning(running, options)
}

function alreadyRunning (running: NodeStatus, options: GlobalOptions): GridError {
  const what = running.mode === 'daemon' ? 'a grid daemon' : 'the embedded node of a running grid build'
  return new GridError('GRID_ERR_DAEMON_RUNNING', `${what} (pid ${running.pid}) already answers on ${options.control}`, {
    hint: running.mode === 'daemon'
      ? 'it is already running; grid stop stops it (or give a second daemon its own --cache)'
      : 'wait for that build to finish, then start the daemon'
  })
}

/**
 * Starts this same daemon command (without --detach) as a process of its own session, its
 * output to <cache>/logs/daemon.out, and waits until it answers on the control socket (and is
 * in the mesh when it has one). If it exits first, what it printed is the error.
 */
async function detach (args: string[], withMesh: boolean, options: GlobalOptions, output: Output): Promise<number> {
  const logs = join(options.cacheDir, 'logs')
  await mkdir(logs, { recursive: true })
  const outPath = join(logs, 'daemon.out')
  const globals = ['--cache', resolve(options.cacheDir), '--control', resolve(options.control), ...(options.configExplicit ? ['--config', resolve(options.configPath)] : [])]
  // Its own file until it answers (then renamed to daemon.out): of two --detach at once, the
  // second daemon, refused, wrote over what the first printed, and each read the other's words.
  const ownPath = `${outPath}.${randomBytes(4).toString('hex')}`
  const fd = openSync(ownPath, 'wx')
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1] as string, ...globals, 'daemon', ...args], {
    detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, [DETACHED_ENV]: '1' }
  })
  closeSync(fd)
  const exited = new Promise<string>(resolve => child.once('exit', (code, signal) => { resolve(signal === null ? `status ${code}` : signal) }))
  child.once('error', () => {}) // a failed spawn also exits: reported below
  const deadline = Date.now() + DETACH_TIMEOUT_MS
  for (;;) {
    const how = await Promise.race([exited, new Promise<undefined>(resolve => setTimeout(resolve, POLL_MS, undefined))])
    if (how !== undefined) {
      const printed = (await readFile(ownPath, 'utf8').catch(() => '')).trimEnd()
      // Another daemon took the cache first: one started at the same moment (two --detach at
      // once), which answers once its mesh is up, or already did by the time this one looked
      // (it then refused itself as a second daemon). Then this is the refusal a second daemon
      // gets, not a failure to start.
      if (printed.includes('GRID_ERR_CACHE_LOCKED') || printed.includes('GRID_ERR_DAEMON_RUNNING')) {
        // as long as grid status waits for a daemon that holds the cache and does not answer yet
        const other = await answering(options, Math.min(deadline, Date.now() + LOCKED_WAIT_MS))
        if (other !== undefined) {
          await rm(ownPath, { force: true })
          throw alreadyRunning(other, options)
        }
      }
      await rename(ownPath, outPath).catch(() => {})
      const where = `everything it printed is in ${outPath}, its log in ${join(logs, 'grid.log')}`
      // its own error, on the same line and with its hint first, rather than nested below ours
      const own = lastError(printed)
      throw new GridError('GRID_ERR_DAEMON_START', `the daemon started in the background exited (${how}) before it answered on ${options.control}` +
        (own !== undefined ? `: ${own.message}` : printed === '' ? '' : `; it printed:\n${printed}`), {
        hint: own?.hint === undefined ? where : `${own.hint}; ${where}`
      })
    }
    const running = await statusOf(options)
    if (running !== undefined && running.pid === child.pid && (!withMesh || running.mesh !== null)) {
      child.unref()
      await rename(ownPath, outPath).catch(() => {})
      const log = join(logs, 'grid.log')
      if (options.json) output.out(JSON.stringify({ nodeId: running.nodeId, pid: running.pid, control: running.control, cacheDir: running.cacheDir, log, mesh: running.mesh }))
      else output.err(`grid: daemon ${running.nodeId} started in the background (pid ${running.pid}), serving ${running.control}; log ${log}; grid stop stops it`)
      warnIfOpen(running, output)
      return 0
    }
    if (Date.now() > deadline) {
      child.kill('SIGTERM')
      await rename(ownPath, outPath).catch(() => {})
      throw new GridError('GRID_ERR_DAEMON_START', `the daemon started in the background (pid ${child.pid}) did not answer on ${options.control} within ${DETACH_TIMEOUT_MS / 1000} s, so it was stopped`, {
        hint: `what it printed is in ${outPath}, its log in ${join(logs, 'grid.log')}`
      })
    }
  }
}

/**
 * A daemon with no swarm key is in the open mesh: any grid node on the LAN without a key is a
 * member, and may serve it cache entries and send it compiles (docs/security.md). Fine for
 * trying grid out on one's own machines; an office wants a key. Said at every start.
 */
function warnIfOpen (status: NodeStatus, output: Output): void {
  if (status.mesh?.swarm !== 'open') return
  output.err('grid: warning: no swarm key, so this daemon is in the open mesh: any grid node on this network without a key ' +
    'is a member, and its cache entries and compiles are taken as a member\'s')
  output.err('  hint: for an office, run `grid init` once and copy the swarm.key it writes to every workstation (docs/security.md)')
}

/**
 * A swarm key other users of this machine can read makes each of them a member (a key copied
 * in by hand is often 0644). Said at every start, like the open mesh; the key is still used.
 */
async function warnIfKeyReadable (file: string | undefined, output: Output): Promise<void> {
  if (file === undefined || process.platform === 'win32') return
  const st = await stat(file).catch(() => undefined)
  if (st === undefined || (st.mode & 0o044) === 0) return
  output.err(`grid: warning: the swarm key ${file} is readable by other users of this machine (mode ${(st.mode & 0o777).toString(8)}): each of them can join the mesh`)
  output.err(`  hint: chmod 600 ${file}`)
}

/** The status of the node that answers on the control socket by `deadline`, or undefined. */
async function answering (options: GlobalOptions, deadline: number): Promise<NodeStatus | undefined> {
  for (;;) {
    const running = await statusOf(options)
    if (running !== undefined || Date.now() > deadline) return running
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
}

/** The status of the node on the control socket, or undefined when none answers. */
async function statusOf (options: GlobalOptions): Promise<NodeStatus | undefined> {
  const client = await connectNode(options)
  if (client === undefined) return undefined
  try {
    return (await client.request({ type: 'status' })).status
  } catch {
    return undefined // it is starting or stopping: ask again
  } finally {
    client.close()
  }
}
