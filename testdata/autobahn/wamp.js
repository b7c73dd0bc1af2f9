'use strict';
// What callee.js and caller.js share: command-line options and the
// Autobahn|JS connection, set up so that it never retries and never hangs.

const autobahn = require('autobahn');

// parseArgs reads --name=value and --name value pairs, and bare --flag as
// true, over the defaults; any other argument is refused.
function parseArgs(argv, defaults) {
  const opts = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m || !(m[1] in defaults)) {
      usage(`unknown argument ${argv[i]}`);
    }
    let value = m[2];
    if (value === undefined) {
      if (typeof defaults[m[1]] === 'boolean') {
        value = true;
      } else if (i + 1 < argv.length) {
        value = argv[++i];
      } else {
        usage(`--${m[1]} needs a value`);
      }
    }
    if (typeof defaults[m[1]] === 'number') {
      value = Number(value);
      if (!Number.isFinite(value) || value < 0) {
        usage(`--${m[1]} must be a number >= 0, not ${m[2]}`);
      }
    }
    opts[m[1]] = value;
  }
  return opts;
}

function usage(why) {
  process.stderr.write(`${process.argv[1]}: ${why}\n`);
  process.exit(2);
}

const serializers = {
  json: () => new autobahn.serializer.JSONSerializer(),
  msgpack: () => new autobahn.serializer.MsgpackSerializer(),
  cbor: () => new autobahn.serializer.CBORSerializer(),
};

// connect opens one session. onOpen(session) runs once joined; onClose(why)
// once the connection is gone, with why null when it was closed on purpose
// (leave) and a description otherwise. There are no retries: a test wants
// to see a failure, not have it papered over.
function connect(opts, onOpen, onClose) {
  if (!(opts.serializer in serializers)) {
    usage(`--serializer must be one of ${Object.keys(serializers).join(', ')}`);
  }
  let leaving = false;
  const connection = new autobahn.Connection({
    url: opts.url,
    realm: opts.realm,
    serializers: [serializers[opts.serializer]()],
    max_retries: 0,
    retry_if_unreachable: false,
  });
  connection.onopen = (session) => onOpen(session);
  connection.onclose = (reason, details) => {
    const why = leaving ? null : `${reason}: ${JSON.stringify(details)}`;
    onClose(why);
    return true; // no reconnection
  };
  connection.open();
  return {
    leave() {
      if (leaving) {
        return;
      }
      leaving = true;
      try {
        // GOODBYE, the router's GOODBYE, then the transport closes and
        // onclose runs.
        connection.close('wamp.close.normal');
      } catch (e) {
        onClose(null); // "connection already closed"
      }
    },
  };
}

module.exports = {
  autobahn,
  parseArgs,
  connect,
  env: (name, fallback) => process.env[name] || fallback,
};
