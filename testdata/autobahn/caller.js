'use strict';
// An Autobahn|JS caller for interop_test.go.
//
//   node caller.js --procedure P[,P2,...] [--calls N] [--concurrency C]
//                  [--arg ARG] [--kwargs JSON] [--timeout MS] [--progress]
//                  [--cancel-after MS] [--deadline S]
//                  [--url URL] [--realm REALM] [--serializer json|msgpack|cbor]
//
// URL and realm default to $WAMP_URL and $WAMP_REALM, else
// ws://127.0.0.1:9090/ and realm1. Makes N calls (the procedures taken in
// turn), at most C at a time, each with the single argument ARG, the
// keyword arguments JSON (an object) when given, and the options
// timeout=MS (when given) and receive_progress=true (--progress). With
// --cancel-after, a call still unanswered after MS is cancelled (CANCEL,
// mode "kill": the callee's answer to the INTERRUPT ends the call). Autobahn
// 22.11.1 forgets a call it cancels in the other modes, then takes the
// dealer's ERROR for it as a protocol violation and drops the connection,
// so they are not offered.
// Then it leaves the session (GOODBYE), prints one JSON line and exits 0:
//
//   {"event":"summary","calls":N,"results":R,"progress":P,
//    "errors":{"<error URI>":count,...},"procedures":{"<P>":{...}},...}
//
// "progress" counts progressive results received. Losing the router, or no
// end within --deadline seconds, prints the summary so far and exits 1.

const { parseArgs, connect, env } = require('./wamp.js');

const opts = parseArgs(process.argv.slice(2), {
  url: env('WAMP_URL', 'ws://127.0.0.1:9090/'),
  realm: env('WAMP_REALM', 'realm1'),
  serializer: 'json',
  procedure: '',
  calls: 1,
  concurrency: 1,
  arg: 'hello',
  kwargs: '',
  timeout: 0,
  progress: false,
  'cancel-after': 0,
  deadline: 60,
});
const procedures = opts.procedure.split(',').filter(Boolean);
const kwargs = opts.kwargs === '' ? null : JSON.parse(opts.kwargs);
if (procedures.length === 0 || opts.calls < 1 || opts.concurrency < 1) {
  process.stderr.write('caller: --procedure, and --calls and --concurrency of at least 1, are needed\n');
  process.exit(2);
}

const summary = { event: 'summary', node: process.version, calls: 0, results: 0, progress: 0, errors: {}, procedures: {}, serializer: opts.serializer };
const started = Date.now();
let done = false;

function tally(procedure, key, uri) {
  const p = summary.procedures[procedure] || (summary.procedures[procedure] = { calls: 0, results: 0, progress: 0, errors: {} });
  if (key === 'errors') {
    summary.errors[uri] = (summary.errors[uri] || 0) + 1;
    p.errors[uri] = (p.errors[uri] || 0) + 1;
  } else {
    summary[key]++;
    p[key]++;
  }
}

function finish(code, why) {
  if (done) {
    return;
  }
  done = true;
  if (why) {
    summary.failure = why;
    process.stderr.write(`caller: ${why}\n`);
  }
  summary.seconds = (Date.now() - started) / 1000;
  process.stdout.write(JSON.stringify(summary) + '\n');
  process.exit(code);
}

setTimeout(() => finish(1, `not done within ${opts.deadline}s`), opts.deadline * 1000).unref();

const conn = connect(opts, (session) => {
  let next = 0;
  let ended = 0;
  const one = () => {
    if (next >= opts.calls) {
      return;
    }
    const procedure = procedures[next % procedures.length];
    next++;
    const options = {};
    if (opts.timeout > 0) {
      options.timeout = opts.timeout;
    }
    if (opts.progress) {
      options.receive_progress = true;
    }
    tally(procedure, 'calls');
    // With when.js (Autobahn's default where it is installed) progressive
    // results arrive through the third callback of then().
    const call = session.call(procedure, [opts.arg], kwargs, options);
    let cancel = null;
    if (opts['cancel-after'] > 0) {
      cancel = setTimeout(() => call.cancel({ mode: 'kill' }), opts['cancel-after']);
    }
    call.then(
      () => tally(procedure, 'results'),
      (err) => tally(procedure, 'errors', typeof err.error === 'string' ? err.error : `non-WAMP: ${err}`),
      () => tally(procedure, 'progress'),
    ).then(() => {
      clearTimeout(cancel);
      ended++;
      if (ended === opts.calls) {
        conn.leave();
      } else {
        one();
      }
    });
  };
  for (let i = 0; i < opts.concurrency; i++) {
    one();
  }
}, (why) => finish(why === null ? 0 : 1, why === null ? null : `lost the router at ${opts.url}: ${why}`));
