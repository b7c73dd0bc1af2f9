'use strict';
// An Autobahn|JS callee for interop_test.go.
//
//   node callee.js [--url URL] [--realm REALM] [--serializer json|msgpack|cbor]
//                  [--procedures hello1,...,hello9] [--fail hello9,...]
//                  [--slow hello8,... [--slow-ms 400]] [--big hello7,... [--big-bytes 30000]]
//                  [--kwargs JSON]
//
// URL and realm default to $WAMP_URL and $WAMP_REALM, else
// ws://127.0.0.1:9090/ and realm1. Registers every procedure and answers
// each invocation at once, by its first argument:
//
//   "error"          ERROR app.error.interop, with arguments
//   "runtime"        the handler throws; Autobahn answers wamp.error.runtime_error
//   "slow:MS"        the result after MS milliseconds
//   "progress:N"     N progressive results, then the final one, when the
//                    INVOCATION asks for them; else just the final one.
//                    nexus asks only callees that announce call_canceling,
//                    which Autobahn|JS 22.11.1 does not: through this router
//                    an Autobahn callee never sends progressive results.
//   anything else    the result "Hello from <procedure>", and some text
//                    that JSON encoders escape differently ("ü 👋 <&> \\ / \u2028")
//
// except that procedures listed in --fail always answer ERROR
// app.error.hello, like the PHP callee's errors; those in --slow answer
// after --slow-ms; those in --big answer with a string of --big-bytes
// bytes of UTF-8 (the router sends it as several WebSocket frames). With
// --kwargs, every result also carries that JSON object as ArgumentsKw.
//
// Prints one JSON line {"event":"registered",...} once every procedure is
// registered. SIGTERM or SIGINT leave the session (GOODBYE), print
// {"event":"summary",...} and exit 0; losing the router exits 1.

const { autobahn, parseArgs, connect, env } = require('./wamp.js');

const opts = parseArgs(process.argv.slice(2), {
  url: env('WAMP_URL', 'ws://127.0.0.1:9090/'),
  realm: env('WAMP_REALM', 'realm1'),
  serializer: 'json',
  procedures: 'hello1,hello2,hello3,hello4,hello5,hello6,hello7,hello8,hello9',
  fail: '',
  slow: '',
  'slow-ms': 400,
  big: '',
  'big-bytes': 30000,
  kwargs: '',
});
const list = (s) => new Set(s.split(',').filter(Boolean));
const procedures = [...list(opts.procedures)];
const failing = list(opts.fail);
const slow = list(opts.slow);
const big = list(opts.big);
const kwargs = opts.kwargs === '' ? null : JSON.parse(opts.kwargs);

const counts = { invocations: 0, results: 0, errors: 0, progress: 0, progressUnavailable: 0 };
const byProcedure = {};
const started = Date.now();

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function handler(procedure) {
  return (args, kwargs, details) => {
    counts.invocations++;
    byProcedure[procedure] = (byProcedure[procedure] || 0) + 1;
    const arg = typeof args[0] === 'string' ? args[0] : '';
    if (failing.has(procedure) || arg === 'error') {
      counts.errors++;
      throw new autobahn.Error(failing.has(procedure) ? 'app.error.hello' : 'app.error.interop',
        [`${procedure} fails as asked`], { procedure });
    }
    if (arg === 'runtime') {
      counts.errors++;
      throw new TypeError(`${procedure} throws as asked`);
    }
    let m = /^slow:(\d+)$/.exec(arg);
    if (m || slow.has(procedure)) {
      return new Promise((resolve) => setTimeout(() => {
        counts.results++;
        resolve(result(`slow ${procedure}`));
      }, m ? Number(m[1]) : opts['slow-ms']));
    }
    m = /^progress:(\d+)$/.exec(arg);
    if (m) {
      if (details.progress) {
        for (let i = 0; i < Number(m[1]); i++) {
          details.progress([i]);
          counts.progress++;
        }
      } else {
        counts.progressUnavailable++;
      }
      counts.results++;
      return result(`done ${procedure}`);
    }
    counts.results++;
    if (big.has(procedure)) {
      // 4 bytes a character: the frame boundaries fall inside characters.
      const n = Math.floor(opts['big-bytes'] / 4);
      return result('🐘'.repeat(n) + 'x'.repeat(opts['big-bytes'] - 4 * n));
    }
    return result(`Hello from ${procedure} ü 👋 <&> \\ / \u2028 "quoted"`);
  };
}

function result(value) {
  return kwargs === null ? value : new autobahn.Result([value], kwargs);
}

let done = false;
const conn = connect(opts, (session) => {
  Promise.all(procedures.map((p) => session.register(p, handler(p)))).then(
    () => print({ event: 'registered', node: process.version, procedures, session: session.id }),
    (err) => {
      process.stderr.write(`callee: cannot register: ${err.error || err} ${JSON.stringify(err.args || [])}\n`);
      finish(1);
    },
  );
}, (why) => {
  if (why !== null) {
    process.stderr.write(`callee: lost the router at ${opts.url}: ${why}\n`);
  }
  finish(why === null ? 0 : 1);
});

function finish(code) {
  if (done) {
    return;
  }
  done = true;
  print({ event: 'summary', ...counts, byProcedure, seconds: (Date.now() - started) / 1000 });
  process.exit(code);
}

process.on('SIGTERM', () => conn.leave());
process.on('SIGINT', () => conn.leave());
