// Starts dynalite's own CLI (same arguments), surviving clients that hang up mid-request.
//
// dynalite 4.0.0 answers a request stream's 'error' with `throw err` (index.js, httpHandler),
// so a client killed while sending a body (a Lambda worker killed mid-request, as the
// worker-crash scenario does) ends the whole process with ECONNRESET "aborted", and every
// function then loses its read models. Such a request was never read to its end, so nothing of
// it was applied: dropping it is what DynamoDB would do. Any other uncaught error still ends
// the process, as Node does by default.
'use strict'

process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) {
    console.error(`${new Date().toISOString()} request aborted by its client, dropped: ${err.message}`)
    return
  }
  console.error(err)
  process.exit(1)
})

require('dynalite/cli.js')
