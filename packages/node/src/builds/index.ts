export { Builds, type BuildRecord } from './builds.js'
