// Loaded with --import before every test file: the polyfill first, as in every entry point.
import '@grid/protocol/polyfill'
