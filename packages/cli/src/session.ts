/**
 * Finds the node a command talks to: the one answering on the control socket, or, for
 * commands that need one (`grid build`), an embedded node started in this process on the same
 * socket and cache dir, stopped when the command is done and no other build still uses it.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { ControlClient, checkSocketPath, configureLogging, closeLogging, prepareCacheDir } from '@grid/node'
import type { GridNode } from '@grid/node/embed'
import { errorCode, GridError } from '@grid/protocol'
import { meshOptions, nodeConfig } from './mesh-options.js'
import type { GlobalOptions } from './options.js'

export interface Session {
  client: ControlClient
  /** Set when this process started the node. */
  embedded: GridNode | undefined
  /** What the command should tell the user about the node it started (it runs without its mesh) */
  warning?: GridError
  close: () => Promise<void>
}

/** Connects to a running node, or returns undefined when none answers. */
export async function connectNode (options: GlobalOptions): Promise<ControlClient | undefined> {
  checkSocketPath(options.control) // a path no socket can have is an error, not "no node"
  try {
    return await ControlClient.connect(options.control)
  } catch (err) {
    if (errorCode(err) === 'GRID_ERR_NODE_UNREACHABLE') return undefined
    throw err
  }
}

const STARTUP_RETRIES = 20
const STARTUP_RETRY_MS = 150

/**
 * `beforeEmbedding`, when given, must resolve before an embedded node is started: `grid build`
 * passes its search for go, so that it starts no node when it will not build.
 */
export async function openSession (options: GlobalOptions, beforeEmbedding?: Promise<unknown>): Promise<Session> {
  for (let attempt = 0; ; attempt++) {
    const client = await connectNode(options)
    if (client !== undefined) return { client, embedded: undefined, close: async () => { client.close() } }
    await beforeEmbedding
    // An embedded node logs to a file: this process's stderr carries the compiler's messages.
    await prepareCacheDir(options.cacheDir)
    configureLogging({ stderr: 'silent', file: join(options.cacheDir, 'logs', 'grid.log') })
    const config = await nodeConfig(options)
    let mesh = await meshOptions(config, options.configPath)
    // A daemon refuses to start without its swarm key; a build goes on, alone, and says so.
    let warning: GridError | undefined
    if (mesh?.swarmKeyFile !== undefined && !existsSync(mesh.swarmKeyFile)) {
      warning = new GridError('GRID_ERR_SWARM_KEY', `the swarm key ${mesh.swarmKeyFile} is missing: this build runs without the mesh (no peers, no shared cache)`, {
        hint: 'copy the team\'s swarm.key there, or fix "swarmKey" in the config'
      })
      mesh = undefined
    }
    // With no key at all, a build's own node stays alone: in the open mesh any keyless grid
    // node on the network would be a member, whose cache entries and compiles become this
    // build's code (docs/security.md). Joining it is a daemon's choice, made with a warning.
    if (mesh?.swarmKeyFile === undefined) mesh = undefined
    const { GridNode } = await import('@grid/node/embed')
    const node = new GridNode({
      cacheDir: options.cacheDir,
      control: options.control,
      mode: 'embedded',
      ...(config.slots === undefined ? {} : { slots: config.slots }),
      ...(config.compileHeapMB === undefined ? {} : { compileHeapMB: config.compileHeapMB }),
      ...(mesh === undefined ? {} : { mesh }),
      ...(config.cacheMax === undefined ? {} : { cacheMax: config.cacheMax })
    })
    try {
      await node.start()
    } catch (err) {
      // Another `grid build` is starting its own node on this cache right now: use that one.
      if (errorCode(err) === 'GRID_ERR_CACHE_LOCKED' && attempt < STARTUP_RETRIES) {
        await new Promise(resolve => setTimeout(resolve, STARTUP_RETRY_MS))
        continue
      }
      throw err
    }
    const embeddedClient = await ControlClient.connect(options.control)
    return {
      client: embeddedClient,
      embedded: node,
      ...(warning === undefined ? {} : { warning }),
      close: async () => {
        embeddedClient.close()
        // Other builds found this node on the socket: serve them to the end, and then no new one.
        await node.stopWhenIdle()
        await closeLogging()
      }
    }
  }
}
