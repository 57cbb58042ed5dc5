export { Builds, holdEnd, settled, type BuildRecord } from './builds.js'
export { wroteOutput } from './output.js'
export { BuildSources, FILE_CLOCK_SLACK_MS, HELPER_OPEN_MS, buildIdAction, compileFiles, notUtf8 } from './sources.js'
export { Waits, type Wait } from './waits.js'
