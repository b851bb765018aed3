// Preloaded into kinesalite and dynalite (node --require). Both servers
// throw from a request's 'error' event (req.on('error', err => { throw err })),
// so a client that abandons a request in flight, as a test does when it
// cancels a call, would crash the whole server. Ignore exactly that error;
// any other uncaught exception still ends the process.
process.on('uncaughtException', function (err) {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) return
  console.error((err && err.stack) || err)
  process.exit(1)
})
