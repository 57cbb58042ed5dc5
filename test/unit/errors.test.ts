// docs/errors.md and the codes the code can throw must agree, both ways.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { it } from 'node:test'
import { ERROR_CODES } from '@grid/protocol'
import { ROOT, packageSources } from '../helpers/index.js'

it('every error code is documented in docs/errors.md and every documented code exists', async () => {
  const doc = await readFile(join(ROOT, 'docs/errors.md'), 'utf8')
  const documented = new Set([...doc.matchAll(/`(GRID_ERR_[A-Z0-9_]+)`/g)].map(m => m[1]))
  const declared = new Set(Object.keys(ERROR_CODES))
  for (const code of declared) assert.ok(documented.has(code), `${code} is not in docs/errors.md`)
  for (const code of documented) assert.ok(declared.has(code as string), `docs/errors.md lists ${code}, which no longer exists`)
})

it('every code used in the source is declared', async () => {
  for (const file of await packageSources()) {
    const text = await readFile(file, 'utf8')
    for (const m of text.matchAll(/'(GRID_ERR_[A-Z0-9_]+)'/g)) {
      assert.ok(Object.hasOwn(ERROR_CODES, m[1] as string), `${file} uses undeclared ${m[1]}`)
    }
  }
})
