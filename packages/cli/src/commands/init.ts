/** `grid init`: create the team's swarm key. */
import { randomBytes } from 'node:crypto'
import { rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { defaultSwarmKeyPath, makeDirs } from '@grid/node'
import { GridError, errorCode, formatSwarmKey, generateSwarmKey, swarmFingerprint } from '@grid/protocol'
import type { GlobalOptions } from '../options.js'
import { noArguments, parseFlags } from '../options.js'
import type { Output } from '../output.js'

export const INIT_HELP = `usage: grid [global options] init [--swarm-key FILE] [--force]

Writes a new random swarm key (default: swarm.key beside the config file, that is
~/.config/grid/swarm.key; mode 0600). Copy the file to
the same place on every workstation of the team: daemons that hold it form one mesh and refuse
every node that does not (docs/security.md). Refuses to overwrite an existing key without
--force (that would lock this machine out of its mesh).`

export async function init (args: string[], options: GlobalOptions, output: Output): Promise<number> {
  const { flags, positional } = parseFlags('init', args, { 'swarm-key': 'string', force: 'bool' })
  noArguments('init', positional)
  const path = flags['swarm-key'] ?? defaultSwarmKeyPath(options.configPath)
  const key = generateSwarmKey()
  try {
    await makeDirs(dirname(path), 0o700).catch((err: unknown) => {
      throw cannotWrite(path, err, `its directory cannot be made (${(err as Error).message})`)
    })
    if (flags.force === true) await replaceKey(path, formatSwarmKey(key))
    else await writeFile(path, formatSwarmKey(key), { mode: 0o600, flag: 'wx' })
  } catch (err) {
    const code = errorCode(err)
    if (code === 'EEXIST' && !await isDirectory(path)) {
      throw new GridError('GRID_ERR_USAGE', `a swarm key already exists at ${path}`, { hint: 'keep it (copy it to the other members), or pass --force to replace it' })
    }
    if (code === 'EEXIST' || code === 'EISDIR') throw cannotWrite(path, err, 'it is a directory')
    // the file system's refusal (permissions, a full disk): the path is the user's to fix
    if (code !== undefined && /^E[A-Z]+$/.test(code)) throw cannotWrite(path, err, (err as Error).message)
    throw err
  }
  const fingerprint = swarmFingerprint(key)
  if (options.json) output.out(JSON.stringify({ path, fingerprint }))
  else output.out(`wrote swarm key ${fingerprint} to ${path}\ncopy this file to every member, then (re)start their daemons`)
  return 0
}

function cannotWrite (path: string, cause: unknown, why: string): GridError {
  return new GridError('GRID_ERR_SWARM_KEY', `cannot write the swarm key to ${path}: ${why}`, {
    cause, hint: 'name a file in a directory you can write: grid init --swarm-key FILE (and give the daemons the same path: --swarm-key FILE, or "swarmKey" in the config)'
  })
}

async function isDirectory (path: string): Promise<boolean> {
  return await stat(path).then(st => st.isDirectory(), () => false)
}

/**
 * Writes a new key in place of an old one: a new file (mode 0600) renamed over it. Writing into
 * the old file would keep its mode (a key copied in with 0644 stayed readable to every local
 * user) and would follow a symlink at the path.
 */
async function replaceKey (path: string, text: string): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
  try {
    await writeFile(tmp, text, { mode: 0o600, flag: 'wx' })
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}
