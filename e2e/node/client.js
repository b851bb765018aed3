#!/usr/bin/env node
// A Node.js client of the Veltrix public API (veltrix.kv.v1.KVService),
// generated at run time from the .proto files in <repo>/proto with
// @grpc/proto-loader. The Go test TestBinNodeClient runs it against a router
// of a real cluster and checks the JSON it prints on stdout.
//
// Usage:
//   node client.js --addr HOST:PORT --proto-dir DIR --table T --pk PK
//                  [--go-pk PK --go-sk SK]
//                  [--cacert CA.pem [--cert C.pem --key K.pem] [--token ID.SECRET]]
//
// It writes three items under partition key PK (sort keys a, b, c; the value
// of b is binary), reads one back, reads a missing one, queries PK forwards,
// backwards and by prefix, reads the item the Go test wrote (--go-pk/--go-sk)
// and asks for an unknown table to see NOT_FOUND. Byte fields are printed as
// base64. Any failure exits 1 with the error on stderr.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const DEADLINE_MS = 10000;

function fail(msg) {
  process.stderr.write(`client.js: ${msg}\n`);
  process.exit(1);
}

function loadKV(protoDir) {
  // includeDirs resolves veltrix/kv/v1/*.proto; the google/protobuf
  // well-known types they import are bundled with proto-loader.
  const def = protoLoader.loadSync(
    ['veltrix/kv/v1/kv.proto', 'veltrix/kv/v1/admin.proto'],
    {
      includeDirs: [protoDir],
      keepCase: true, // field names as in the .proto: partition_key
      longs: String, // uint64 versions do not fit a JS number
      enums: String,
      defaults: true,
      oneofs: true,
    },
  );
  return grpc.loadPackageDefinition(def).veltrix.kv.v1;
}

// call invokes a unary method and resolves with its response.
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + DEADLINE_MS);
    client[method](request, { deadline }, (err, resp) => {
      if (err) {
        err.message = `${method}: ${err.message}`;
        reject(err);
      } else {
        resolve(resp);
      }
    });
  });
}

function waitReady(client) {
  return new Promise((resolve, reject) => {
    client.waitForReady(new Date(Date.now() + DEADLINE_MS), (err) => (err ? reject(err) : resolve()));
  });
}

const b64 = (buf) => Buffer.from(buf || []).toString('base64');
const item = (it) => ({
  sk: Buffer.from(it.key.sort_key).toString('utf8'),
  value_b64: b64(it.value),
  version: it.version,
});

// credentials are plaintext, or TLS trusting --cacert (with the client
// certificate --cert/--key if given), plus --token as the bearer token of
// every call ("authorization: Bearer <id>.<secret>").
function credentials(values) {
  if (!values.cacert) {
    if (values.token || values.cert) fail('--token and --cert need --cacert (TLS)');
    return grpc.credentials.createInsecure();
  }
  const read = (f) => (f ? fs.readFileSync(f) : null);
  let creds = grpc.credentials.createSsl(read(values.cacert), read(values.key), read(values.cert));
  if (values.token) {
    const bearer = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${values.token}`);
      callback(null, md);
    });
    creds = grpc.credentials.combineChannelCredentials(creds, bearer);
  }
  return creds;
}

async function main() {
  const { values } = parseArgs({
    options: {
      addr: { type: 'string' },
      'proto-dir': { type: 'string' },
      table: { type: 'string' },
      pk: { type: 'string' },
      'go-pk': { type: 'string' },
      'go-sk': { type: 'string', default: '' },
      cacert: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      token: { type: 'string' },
    },
  });
  for (const f of ['addr', 'proto-dir', 'table', 'pk']) {
    if (!values[f]) fail(`--${f} is required`);
  }
  const kvPkg = loadKV(path.resolve(values['proto-dir']));
  const kv = new kvPkg.KVService(values.addr, credentials(values));
  await waitReady(kv);

  const table = values.table;
  const pk = Buffer.from(values.pk, 'utf8');
  const key = (sk) => ({ table, partition_key: pk, sort_key: Buffer.from(sk, 'utf8') });
  const binary = Buffer.from([0x00, 0xff, 0x10, 0x80, 0x7f, 0x0a]);
  const writes = [
    ['a', Buffer.from('node-value-a', 'utf8')],
    ['b', binary],
    ['c', Buffer.from('node-value-c', 'utf8')],
  ];

  const out = { puts: [] };
  for (const [sk, value] of writes) {
    const resp = await call(kv, 'Put', { key: key(sk), value });
    out.puts.push({ sk, version: resp.version });
  }
  const got = await call(kv, 'Get', { key: key('b'), consistency: 'CONSISTENCY_QUORUM' });
  out.get = { found: got.found, value_b64: b64(got.value), version: got.version };
  const missing = await call(kv, 'Get', { key: key('zz-missing') });
  out.missing = { found: missing.found };

  const q = await call(kv, 'Query', { table, partition_key: pk });
  out.query = q.items.map(item);
  const qr = await call(kv, 'Query', { table, partition_key: pk, reverse: true, limit: 2 });
  out.query_reverse = qr.items.map(item);
  out.query_reverse_has_next = qr.next_page_token.length > 0;
  const qp = await call(kv, 'Query', { table, partition_key: pk, prefix: Buffer.from('c') });
  out.query_prefix = qp.items.map(item);

  if (values['go-pk']) {
    const g = await call(kv, 'Get', {
      key: { table, partition_key: Buffer.from(values['go-pk'], 'utf8'), sort_key: Buffer.from(values['go-sk'], 'utf8') },
    });
    out.go_item = { found: g.found, value_b64: b64(g.value), version: g.version };
  }

  try {
    await call(kv, 'Get', { key: { table: 'no-such-table', partition_key: pk } });
    out.unknown_table = { code: 'OK' };
  } catch (err) {
    out.unknown_table = { code: grpc.status[err.code], details: err.details };
  }

  kv.close();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => fail(err && err.stack ? err.stack : String(err)));
