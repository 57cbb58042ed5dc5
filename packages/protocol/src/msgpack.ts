/**
 * The one way grid gets msgpackr. Under Node, `msgpackr` itself loads the optional native addon
 * msgpackr-extract, which only speeds up decoding long strings (grid's messages carry few) and
 * costs every `grid` command ~8 ms to load; `msgpackr/pack` resolves to the same JavaScript
 * without it. Both encode and decode the same bytes.
 */
export { Packr } from 'msgpackr/pack'
