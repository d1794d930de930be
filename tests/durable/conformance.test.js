// The official Durable Streams server conformance suite, run against the server at
// $DURABLE_STREAMS_URL (streamnb serve, or reference_server.mjs for the baseline).
// The package's own `--run URL` CLI cannot be used from an npm install: vitest skips
// test files under node_modules, so the suite is imported into this file instead.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.DURABLE_STREAMS_URL
if (!baseUrl) {
  throw new Error(`set DURABLE_STREAMS_URL to the server's base URL (http://127.0.0.1:PORT)`)
}
const longPollTimeoutMs = Number(process.env.DURABLE_STREAMS_LONG_POLL_TIMEOUT_MS ?? 20000)

runConformanceTests({ baseUrl, longPollTimeoutMs })
