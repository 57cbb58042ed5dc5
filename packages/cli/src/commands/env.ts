/**
 * `grid env`: the environment that sends plain `go` commands through this workstation's node,
 * with no `grid` process per build. GOFLAGS gains -trimpath and -toolexec=<shim>, GOCACHEPROG
 * names the cache helper, GRID_SOCKET the node. While no node answers, the helper keeps go's
 * own GOCACHE in go's own format (GRID_WITHOUT_NODE=gocache, packages/node/shim/gostore.go), so
 * go caches as it does without grid. GRID_ENV_GOFLAGS keeps the GOFLAGS from before (absent if
 * it was unset), GRID_ENV_GOFLAGS_SET the GOFLAGS grid env set, for `--unset` and for `grid
 * build`, which undo this environment for the go they run.
 *
 * GOFLAGS is the user's text as it is, grid's entries appended: cmd/go splits it with quoting
 * (cmd/internal/quoted), so `'-ldflags=-X "main.v=a  b"'` must keep its two spaces.
 */
import { execFile } from 'node:child_process'
import { resolve } from 'node:path'
import { detectGo, ensureShim } from '@grid/node'
import { ENV, GridError } from '@grid/protocol'
import type { GlobalOptions } from '../options.js'
import { noArguments, parseFlags, usageError } from '../options.js'
import type { Output } from '../output.js'
import { BeforeGo } from '../interrupt.js'
import { connectNode } from '../session.js'

export const ENV_HELP = `usage: grid [global options] env [--unset] [--shell sh|fish]

Prints the environment that sends plain go commands (go build, go test, go run, gopls' builds,
your editor's) through this workstation's grid node, with no grid process per command:

  eval "$(grid env)"            # sh, bash, zsh: this shell and what it starts
  grid env --shell fish | source
  eval "$(grid env --unset)"    # back to go without grid

GOFLAGS, your own text kept as it is, gains -trimpath (unless --no-trimpath is given before
env) and -toolexec=<grid shim>; GOCACHEPROG names grid's cache helper; GRID_SOCKET the node's
control socket. The node is the daemon's (grid daemon, with the same --cache and --control):
while none answers, go commands run as without grid, caching in go's own GOCACHE.

The shim is built for this Go and this grid, in grid's cache dir: after upgrading either, or
removing that dir, run grid env again (grid build in such a shell says so).

Compared with grid build: no summary per build (grid status has the node's counters) and go's
-p stays its default; with peers that can take compiles, grid build raises it, or add -p=N to
GOFLAGS. grid build and grid test still work in this environment: they undo it for the go they run.

--shell   sh (default; also bash, zsh, ksh, dash) or fish: the syntax of the lines printed
--unset   print the lines that restore the environment from before grid env (a GOFLAGS
          changed since is kept, less grid's -trimpath and -toolexec)
With --json: {"set": {NAME: value}, "unset": [NAME]} on stdout.`

/** Shells that take sh's syntax for the lines grid env prints. */
const SH_LIKE = ['sh', 'bash', 'zsh', 'ksh', 'dash']

/**
 * Set by `grid env`: the GOFLAGS it set, by which `grid build` and `--unset` tell a GOFLAGS the
 * user has changed since (`GOFLAGS=-tags=foo grid build`) from grid env's own.
 */
const GOFLAGS_SET = ENV.goflagsSet

/** What grid env sets, besides GOFLAGS. */
const GRID_VARS = ['GOCACHEPROG', ENV.socket, ENV.gocache, ENV.withoutNode, ENV.goflagsBefore, GOFLAGS_SET] as const

/** One entry of GOFLAGS as cmd/go reads it, and where its text is. */
export interface GoFlag { value: string, start: number, end: number }

function isSpace (c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r'
}

/**
 * GOFLAGS split as cmd/go splits it (cmd/internal/quoted.Split): at spaces, except inside a
 * field that starts with ' or ", which ends at the same quote (no escapes). An unterminated
 * quote, which go refuses, takes the rest.
 */
export function splitGoFlags (goflags: string): GoFlag[] {
  const flags: GoFlag[] = []
  let i = 0
  while (i < goflags.length) {
    while (isSpace(goflags[i])) i++
    if (i >= goflags.length) break
    const start = i
    const quote = goflags[i]
    if (quote === "'" || quote === '"') {
      const close = goflags.indexOf(quote, i + 1)
      const end = close < 0 ? goflags.length : close + 1
      flags.push({ value: goflags.slice(i + 1, close < 0 ? goflags.length : close), start, end })
      i = end
      continue
    }
    while (i < goflags.length && !isSpace(goflags[i])) i++
    flags.push({ value: goflags.slice(start, i), start, end: i })
  }
  return flags
}

const TRIMPATH = /^--?trimpath(=true)?$/

/** `text` without the given entries of it and the spaces before each (after, for the first). */
function withoutFlags (text: string, flags: GoFlag[]): string {
  for (const f of [...flags].sort((a, b) => b.start - a.start)) {
    let from = f.start
    let to = f.end
    while (from > 0 && isSpace(text[from - 1])) from--
    if (from === 0) while (to < text.length && isSpace(text[to])) to++
    text = text.slice(0, from) + text.slice(to)
  }
  return text
}

/**
 * The GOFLAGS grid env appended to the user's: `-toolexec=<shim>`, and the `-trimpath` before
 * it when grid env added one (the user's flags had none). Known exactly when the user's came
 * from the environment (`before`); from a `go env -w` file, a -trimpath of the user's that is
 * the file's last entry, right before grid's, reads as grid's.
 */
function gridFlags (set: string, before: string | undefined): { toolexec: string, trimpath: boolean } {
  const values = splitGoFlags(set).map(f => f.value)
  const toolexec = values.at(-1) ?? ''
  const user = before !== undefined && before.trim() !== '' ? splitGoFlags(before).map(f => f.value) : values.slice(0, -2)
  return { toolexec, trimpath: values.at(-2) === '-trimpath' && !user.some(v => TRIMPATH.test(v)) }
}

/**
 * GOFLAGS as it would be without grid env: the one from before (undefined: unset) while GOFLAGS
 * is still what grid env set; else the user's current GOFLAGS, which they changed since, less
 * grid's -toolexec and the -trimpath grid env added, if still there.
 */
function goflagsWithoutGrid (goflags: string | undefined, set: string, before: string | undefined): string | undefined {
  if (goflags === set) return before
  if (goflags === undefined) return undefined
  const grid = gridFlags(set, before)
  if (!grid.toolexec.startsWith('-toolexec=')) return goflags
  const flags = splitGoFlags(goflags)
  const at = flags.findLastIndex(f => f.value === grid.toolexec)
  if (at < 0) return goflags
  const previous = flags[at - 1]
  return withoutFlags(goflags, [flags[at] as GoFlag, ...(grid.trimpath && previous?.value === '-trimpath' ? [previous] : [])])
}

/** Whether `grid env` was applied to this environment (GRID_ENV_GOFLAGS alone: by an older grid). */
function gridEnvApplied (env: NodeJS.ProcessEnv): boolean {
  return env[GOFLAGS_SET] !== undefined || env[ENV.goflagsBefore] !== undefined
}

/**
 * The environment as it was before `grid env` was applied to it (unchanged if it was not),
 * but for a GOFLAGS the user has set since, which is kept: what `grid build` gives the go it
 * runs, what `grid env` starts from, and what `--unset` restores.
 */
export function withoutGridEnv (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (!gridEnvApplied(env)) return env
  const before = env[ENV.goflagsBefore]
  const set = env[GOFLAGS_SET]
  const out = { ...env }
  for (const name of GRID_VARS) delete out[name]
  // set undefined: from a grid that kept only GOFLAGS from before, '' for unset or empty
  const goflags = set === undefined ? (before === '' ? undefined : before) : goflagsWithoutGrid(env.GOFLAGS, set, before)
  if (goflags === undefined) delete out.GOFLAGS
  else out.GOFLAGS = goflags
  return out
}

/**
 * The cache helper an environment from `grid env` names, when it is not this grid's (`shim`):
 * the shell applied `grid env` before Go or grid was upgraded, or before the cache dir was
 * removed. Its plain go commands then run an old shim, which may not speak to this node, or a
 * missing one. undefined when the environment is current, or not from `grid env`.
 */
export function staleGridEnv (env: NodeJS.ProcessEnv, shim: string): string | undefined {
  if (!gridEnvApplied(env)) return undefined
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
    if (!gridEnvApplied(process.env)) {
      output.err('grid: this environment has no grid env applied: nothing to undo')
    } else {
      const goflags = withoutGridEnv(process.env).GOFLAGS
      if (goflags === undefined) unset.push('GOFLAGS')
      else set.GOFLAGS = goflags
      unset.push(...GRID_VARS)
    }
  } else {
    const base = withoutGridEnv(process.env)
    const toolchain = await detectGo({ env: base })
    // Ctrl-C while the shim is built (after an upgrade) stops that build and its temp dir goes
    const beforeGo = new BeforeGo()
    const [built] = await Promise.allSettled([ensureShim(options.cacheDir, toolchain, { signal: beforeGo.signal })])
    const died = await beforeGo.end()
    if (died !== undefined) return died
    if (built.status === 'rejected') throw built.reason
    const shim = plainPath(built.value)
    const fromGo = await goEnvFlags(toolchain.go, base)
    const gocacheprog = fromGo.gocacheprog
    // The user's GOFLAGS as cmd/go takes it: the environment's, else the `go env -w` file's.
    const goflags = base.GOFLAGS !== undefined && base.GOFLAGS !== '' ? base.GOFLAGS : fromGo.goflags
    const words = splitGoFlags(goflags).map(f => f.value)
    if (words.some(w => /^--?toolexec(=|$)/.test(w))) {
      throw new GridError('GRID_ERR_TOOLEXEC_CONFLICT', `GOFLAGS has a -toolexec already: ${goflags}`, { hint: 'grid sets -toolexec itself: take it out of GOFLAGS (or go env -w GOFLAGS=…) first' })
    }
    if (gocacheprog !== '') {
      throw new GridError('GRID_ERR_USAGE', `GOCACHEPROG is set already: ${gocacheprog}`, { hint: 'grid sets GOCACHEPROG itself: unset it (or go env -u GOCACHEPROG) first' })
    }
    const trimpath = options.trimpath && !words.some(w => TRIMPATH.test(w))
    const added = [...(trimpath ? ['-trimpath'] : []), `-toolexec=${shim}`].join(' ')
    const gridGoflags = goflags.trim() === '' ? added : `${goflags} ${added}`
    Object.assign(set, {
      GOFLAGS: gridGoflags,
      GOCACHEPROG: `${shim} cacheprog`,
      [ENV.socket]: resolve(options.control), // go commands run from other directories
      [ENV.gocache]: toolchain.gocache,
      [ENV.withoutNode]: 'gocache',
      [GOFLAGS_SET]: gridGoflags
    })
    // GOFLAGS from before, exactly: unset stays unset, an empty one empty
    if (base.GOFLAGS !== undefined) set[ENV.goflagsBefore] = base.GOFLAGS
    else if (process.env[ENV.goflagsBefore] !== undefined) unset.push(ENV.goflagsBefore)
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
