/**
 * `grid env`: the environment that sends plain `go` commands through this workstation's node,
 * with no `grid` process per build. GOFLAGS gains -trimpath and -toolexec=<shim>, GOCACHEPROG
 * names the cache helper, GRID_SOCKET the node. While no node answers, the helper keeps go's
 * own GOCACHE in go's own format (GRID_WITHOUT_NODE=gocache, packages/node/shim/gostore.go), so
 * go caches as it does without grid. GRID_ENV_GOFLAGS keeps the GOFLAGS from before, for
 * `--unset` and for `grid build`, which undoes this environment for the go it runs.
 */
import { execFile } from 'node:child_process'
import { resolve } from 'node:path'
import { detectGo, ensureShim } from '@grid/node'
import { ENV, GridError } from '@grid/protocol'
import type { GlobalOptions } from '../options.js'
import { noArguments, parseFlags, usageError } from '../options.js'
import type { Output } from '../output.js'
import { connectNode } from '../session.js'

export const ENV_HELP = `usage: grid [global options] env [--unset] [--shell sh|fish]

Prints the environment that sends plain go commands (go build, go test, go run, gopls' builds,
your editor's) through this workstation's grid node, with no grid process per command:

  eval "$(grid env)"            # sh, bash, zsh: this shell and what it starts
  grid env --shell fish | source
  eval "$(grid env --unset)"    # back to go without grid

GOFLAGS gains -trimpath (unless --no-trimpath is given before env) and -toolexec=<grid shim>;
GOCACHEPROG names grid's cache helper; GRID_SOCKET the node's control socket. The node is the
daemon's (grid daemon, with the same --cache and --control): while none answers, go commands
run as without grid, caching in go's own GOCACHE.

The shim is built for this Go and this grid, in grid's cache dir: after upgrading either, or
removing that dir, run grid env again (grid build in such a shell says so).

Compared with grid build: no summary per build (grid status has the node's counters) and go's
-p stays its default; with peers that can take compiles, grid build raises it, or add -p=N to
GOFLAGS. grid build and grid test still work in this environment: they undo it for the go they run.

--shell   sh (default; also bash, zsh, ksh, dash) or fish: the syntax of the lines printed
--unset   print the lines that restore the environment from before grid env
With --json: {"set": {NAME: value}, "unset": [NAME]} on stdout.`

/** Shells that take sh's syntax for the lines grid env prints. */
const SH_LIKE = ['sh', 'bash', 'zsh', 'ksh', 'dash']

/** What grid env sets, besides GOFLAGS. */
const GRID_VARS = ['GOCACHEPROG', ENV.socket, ENV.gocache, ENV.withoutNode, ENV.goflagsBefore] as const

/**
 * The environment as it was before `grid env` was applied to it (unchanged if it was not):
 * what `grid build` gives the go it runs, and what `grid env` starts from.
 */
export function withoutGridEnv (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const before = env[ENV.goflagsBefore]
  if (before === undefined) return env
  const out = { ...env }
  for (const name of GRID_VARS) delete out[name]
  if (before === '') delete out.GOFLAGS
  else out.GOFLAGS = before
  return out
}

/**
 * The cache helper an environment from `grid env` names, when it is not this grid's (`shim`):
 * the shell applied `grid env` before Go or grid was upgraded, or before the cache dir was
 * removed. Its plain go commands then run an old shim, which may not speak to this node, or a
 * missing one. undefined when the environment is current, or not from `grid env`.
 */
export function staleGridEnv (env: NodeJS.ProcessEnv, shim: string): string | undefined {
  if (env[ENV.goflagsBefore] === undefined) return undefined
  const helper = env.GOCACHEPROG ?? ''
  return helper === `${shim} cacheprog` ? undefined : helper
}

/** `go env GOFLAGS GOCACHEPROG` in the given environment (which includes `go env -w` values). */
async function goEnvFlags (go: string, env: NodeJS.ProcessEnv): Promise<{ goflags: string, gocacheprog: string }> {
  const out = await new Promise<string>((resolve, reject) => {
    execFile(go, ['env', 'GOFLAGS', 'GOCACHEPROG'], { env }, (err, stdout) => { if (err === null) resolve(stdout); else reject(err) })
  })
  const [goflags = '', gocacheprog = ''] = out.split('\n').map(s => s.trim())
  return { goflags, gocacheprog }
}

/** A value for GOFLAGS and GOCACHEPROG, which cmd/go splits at spaces (quotes are not worth it here). */
function plainPath (path: string): string {
  if (/[\s'"\\]/.test(path)) {
    throw new GridError('GRID_ERR_USAGE', `the shim's path has a space, quote or backslash, which GOFLAGS cannot carry: ${path}`, {
      hint: 'give grid a cache dir without them: grid --cache DIR env (and the daemon the same --cache)'
    })
  }
  return path
}

function quoteSh (value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`
}

function quoteFish (value: string): string {
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`
}

export async function env (args: string[], options: GlobalOptions, output: Output): Promise<number> {
  const { flags, positional } = parseFlags('env', args, { unset: 'bool', shell: 'string' })
  noArguments('env', positional)
  const asked = flags.shell ?? 'sh'
  const shell = SH_LIKE.includes(asked) ? 'sh' : asked
  if (shell !== 'sh' && shell !== 'fish') throw usageError(`unknown shell ${asked}: grid env prints for sh (also bash, zsh, ksh, dash) or fish`, 'run `grid env --help`')

  const set: Record<string, string> = {}
  const unset: string[] = []
  if (flags.unset === true) {
    const before = process.env[ENV.goflagsBefore]
    if (before === undefined) {
      output.err('grid: this environment has no grid env applied: nothing to undo')
    } else {
      if (before === '') unset.push('GOFLAGS')
      else set.GOFLAGS = before
      unset.push(...GRID_VARS)
    }
  } else {
    const base = withoutGridEnv(process.env)
    const toolchain = await detectGo({ env: base })
    const shim = plainPath(await ensureShim(options.cacheDir, toolchain))
    const { goflags, gocacheprog } = await goEnvFlags(toolchain.go, base)
    const words = goflags.split(/\s+/).filter(w => w !== '')
    if (words.some(w => /^--?toolexec(=|$)/.test(w))) {
      throw new GridError('GRID_ERR_TOOLEXEC_CONFLICT', `GOFLAGS has a -toolexec already: ${goflags}`, { hint: 'grid sets -toolexec itself: take it out of GOFLAGS (or go env -w GOFLAGS=…) first' })
    }
    if (gocacheprog !== '') {
      throw new GridError('GRID_ERR_USAGE', `GOCACHEPROG is set already: ${gocacheprog}`, { hint: 'grid sets GOCACHEPROG itself: unset it (or go env -u GOCACHEPROG) first' })
    }
    const trimpath = options.trimpath && !words.some(w => /^--?trimpath(=true)?$/.test(w))
    Object.assign(set, {
      GOFLAGS: [...words, ...(trimpath ? ['-trimpath'] : []), `-toolexec=${shim}`].join(' '),
      GOCACHEPROG: `${shim} cacheprog`,
      [ENV.socket]: resolve(options.control), // go commands run from other directories
      [ENV.gocache]: toolchain.gocache,
      [ENV.withoutNode]: 'gocache',
      [ENV.goflagsBefore]: base.GOFLAGS ?? ''
    })
    const client = await connectNode(options)
    if (client === undefined) {
      output.err(`grid: no node answers on ${options.control} now: until one does, go commands in this environment run as without grid`)
      output.err('  hint: start one with `grid daemon` (same --cache and --control as here)')
    } else {
      client.close()
    }
  }

  if (options.json) {
    output.out(JSON.stringify({ set, unset }))
    return 0
  }
  const lines = shell === 'fish'
    ? [...Object.entries(set).map(([k, v]) => `set -gx ${k} ${quoteFish(v)}`), ...unset.map(k => `set -e ${k}`)]
    : [...Object.entries(set).map(([k, v]) => `export ${k}=${quoteSh(v)}`), ...(unset.length > 0 ? [`unset ${unset.join(' ')}`] : [])]
  if (lines.length > 0) output.out(lines.join('\n'))
  return 0
}
