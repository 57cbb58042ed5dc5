// Every flag the CLI parses is in the help a user reads: `grid --help` and the README's options
// table for the global options, `grid <command> --help` for a command's own. The flags are
// read from the parsers' sources, so that a flag added there without its line fails here. So
// is every field of the build summary's --json in the README's list of them.
import assert from 'node:assert/strict'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { it } from 'node:test'
import { emptyBuildStats } from '@grid/protocol'
import { GRID_BIN, ROOT, run } from '../helpers/index.js'

const CLI_SRC = join(ROOT, 'packages/cli/src')

async function help (args: string[]): Promise<string> {
  const r = await run(process.execPath, [GRID_BIN, ...args])
  assert.equal(r.code, 0, `grid ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** `--name` as a whole word of `text`, not the start of a longer flag. */
function mentions (text: string, flag: string): boolean {
  return new RegExp(`(^|[\\s\`\\[(,])${flag.replace(/[-]/g, '\\-')}(?![\\w-])`, 'm').test(text)
}

it('every global option the parser takes is in grid --help and in the README\'s options table', async () => {
  const parser = await readFile(join(CLI_SRC, 'options.ts'), 'utf8')
  const body = parser.slice(parser.indexOf('export function parseGlobal'), parser.indexOf('export function splitFlag'))
  const flags = [...body.matchAll(/case '(-{1,2}[a-z][a-z-]*)'/g)].map(m => m[1] as string)
  assert.ok(flags.includes('--cache') && flags.includes('--toolexec'), `found the parser's options: ${flags.join(' ')}`)
  const text = await help(['--help'])
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const table = readme.slice(readme.indexOf('Global options go before the command'), readme.indexOf('## How it works'))
  for (const flag of flags) {
    assert.ok(mentions(text, flag), `grid --help does not mention ${flag}`)
    assert.ok(table.split('\n').some(line => line.startsWith('| ') && mentions(line, flag)), `the README's options table has no row for ${flag}`)
  }
})

it('every flag of a command\'s own parser is in that command\'s --help', async () => {
  const dir = join(CLI_SRC, 'commands')
  let checked = 0
  for (const file of await readdir(dir)) {
    if (!file.endsWith('.ts')) continue
    const source = await readFile(join(dir, file), 'utf8')
    for (const m of source.matchAll(/parseFlags\('([a-z ]+)', \w+, \{([^}]*)\}/g)) {
      const command = (m[1] as string).split(' ')
      const flags = [...(m[2] as string).matchAll(/'?([a-z][a-z-]*)'?: '(?:bool|string|list)'/g)].map(f => `--${f[1] as string}`)
      const text = await help([...command, '--help'])
      for (const flag of flags) assert.ok(mentions(text, flag), `grid ${command.join(' ')} --help does not mention ${flag}`)
      checked += flags.length
    }
  }
  assert.ok(checked >= 15, `the daemon's, init's, env's and cache gc's flags were found (${checked})`)
})

it('every field of the --json build summary\'s cache, cache.peer and compiles is in the README\'s list of them', async () => {
  // Regression: cache.peer.slowLink was in the summary but not in the list.
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const start = readme.indexOf('With `--json`, go\'s own stdout')
  const list = readme.slice(readme.indexOf('`{command,', start), readme.indexOf('Errors are', start))
  const peerGroup = list.slice(list.indexOf('peer: {'), list.indexOf('}', list.indexOf('peer: {')))
  const stats = emptyBuildStats('b', [])
  const words = (text: string): Set<string> => new Set(text.match(/[A-Za-z]+/g))
  for (const key of Object.keys(stats.cache.peer)) assert.ok(words(peerGroup).has(key), `the README's summary list has no cache.peer.${key}`)
  for (const key of [...Object.keys(stats.cache), ...Object.keys(stats.compiles)]) assert.ok(words(list).has(key), `the README's summary list has no ${key}`)
})
