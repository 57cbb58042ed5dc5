/** Where a node keeps its state, and the defaults the CLI and the daemon share. */
import { constants } from 'node:fs'
import { access, chmod, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { ENV, GridError } from '@grid/protocol'
import { makeDirs } from './files.js'

/** `$GRID_CACHE`, else `$XDG_CACHE_HOME/grid`, else `~/.cache/grid`. */
export function defaultCacheDir (env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env[ENV.cache]
  if (explicit !== undefined && explicit !== '') return explicit
  const xdg = env.XDG_CACHE_HOME
  return join(xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.cache'), 'grid')
}

/**
 * Makes the cache dir if need be and checks that this user can write it: the first step of
 * whatever uses it (the shim's build, a node, the cache commands), so that a dir that is a
 * file, or read-only, is one clear GRID_ERR_CACHE_OPEN and not an error from deep inside.
 *
 * The dir is this user's alone (mode 0700): it holds the shim binary cmd/go runs for every
 * tool, the cache entries a build links into its binaries, the node's key, its log and its
 * control socket. A dir another user could write (umask 0002 made the old ones 0775) would let
 * them replace the shim; one they could read would hand them the compiled code of every build.
 * So a dir of this user's with looser modes is tightened to 0700, and one that another user
 * owns (made in a shared /tmp before us, say) is refused.
 */
export async function prepareCacheDir (dir: string): Promise<void> {
  try {
    await makeDirs(dir, 0o700)
    await access(dir, constants.W_OK | constants.X_OK)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'EEXIST' || code === 'ENOTDIR' ? 'it, or a dir above it, is not a directory' : (err as Error).message
    throw new GridError('GRID_ERR_CACHE_OPEN', `cannot use ${dir} as grid's cache dir: ${why}`, {
      cause: err,
      hint: 'make it a directory you can write, or pass another with --cache DIR (or set GRID_CACHE)'
    })
  }
  await makePrivate(dir)
}

/** Refuses a cache dir another user owns; tightens one of ours to 0700. */
async function makePrivate (dir: string): Promise<void> {
  if (process.getuid === undefined) return // Windows: no owners and modes to check
  const st = await stat(dir)
  if (st.uid !== process.getuid()) {
    throw new GridError('GRID_ERR_CACHE_OPEN', `cannot use ${dir} as grid's cache dir: it belongs to another user (uid ${st.uid}), who could replace what grid runs and reads there`, {
      hint: 'pass a directory of your own with --cache DIR (or set GRID_CACHE)'
    })
  }
  if ((st.mode & 0o077) !== 0) {
    await chmod(dir, 0o700).catch((err: Error) => {
      throw new GridError('GRID_ERR_CACHE_OPEN', `cannot make ${dir} private to this user (mode ${(st.mode & 0o777).toString(8)}): ${err.message}`, {
        cause: err, hint: 'chmod 700 it, or pass another cache dir with --cache DIR (or set GRID_CACHE)'
      })
    })
  }
}

/** `$GRID_CONTROL`, else `grid.sock` in the cache dir. */
export function defaultControlPath (cacheDir: string, env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env[ENV.control]
  if (explicit !== undefined && explicit !== '') return explicit
  return join(cacheDir, 'grid.sock')
}

/** Linux's sun_path holds 107 bytes plus the terminating NUL (macOS: 103). */
const MAX_SOCKET_PATH_BYTES = process.platform === 'linux' ? 107 : 103

export function checkSocketPath (path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new GridError('GRID_ERR_SOCKET_PATH', `control socket path is ${Buffer.byteLength(path)} bytes, over the ${MAX_SOCKET_PATH_BYTES}-byte limit of Unix sockets: ${path}`, {
      hint: 'pass a shorter path in a directory of your own with --control, such as $XDG_RUNTIME_DIR/grid.sock (or set GRID_CONTROL); in a shared one such as /tmp another user can take the name first'
    })
  }
}
