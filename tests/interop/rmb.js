#!/usr/bin/env node
// The grid's TypeScript RMB client (@threefold/rmb_direct_client) as an
// oracle for zos-perf's tests. One operation per run (`batch` runs
// several): the name is the first argument, the input is a JSON object on
// standard input, the output one JSON object on standard output.
// Everything is offline: twin lookups are answered from the `twins` list of
// the input, never from a chain.
//
// Operations:
//   keys        {mnemonic}                       -> public keys as the TS client derives them
//   jwt         {mnemonic, keyType, twin, sid, nowMs} -> the token Client.newJWT makes
//   verify-jwt  {token, account, keyType}        -> {valid}
//   request     {mnemonic, keyType, source, sid, dest, command, payload, encrypt, twins, timestamp, expiration, uid}
//                                                -> {envelope: hex} signed (and encrypted) by ClientEnvelope
//   open        {mnemonic, envelope: hex, twins} -> {verified, kind, payload, error}
//                                                   (verify() then decrypt() as the client does for a reply)
//   call        {mnemonic, keyType, relayUrl, sid, twins, dest, command, payload}
//                                                -> {result} or {error}: a real Client.connect/send/read
//                                                   through a relay; only its chain client is replaced
//                                                   by one answering from `twins`
//   batch       {ops: [{op, input}, ...]}        -> {results: [...]}: the operations in order, in
//                                                   this one run (Node.js and the client take about a
//                                                   second of CPU to load, per run)
//   bench       as call, plus {calls, warmup, readCalls}
//                                                -> {calls, p50_ms, p99_ms, max_ms, read: {...}}: one
//                                                   connection, `calls` sequential timed round trips
//                                                   (send until the reply is verified, decrypted and
//                                                   parsed) after `warmup` untimed ones; `read` the
//                                                   same for `readCalls` calls through the client's
//                                                   own read(), which polls once a second
"use strict";

const path = require("path");
const pkgDir = path.join(__dirname, "node_modules/@threefold/rmb_direct_client");
const { Client } = require("@threefold/rmb_direct_client");
const ClientEnvelope = require(path.join(pkgDir, "dist/node/envelope.js")).default;
const { generatePublicKey } = require(path.join(pkgDir, "dist/node/util.js"));
const T = require(path.join(pkgDir, "dist/node/types/lib/types.js"));
const { Keyring } = require("@polkadot/keyring");
const { cryptoWaitReady } = require("@polkadot/util-crypto");

const hex = (u8) => Buffer.from(u8).toString("hex");
const unhex = (s) => new Uint8Array(Buffer.from(s.replace(/^0x/, ""), "hex"));

function pair(mnemonic, type) {
  return new Keyring({ type }).addFromUri(mnemonic);
}

// The `twins` map the client keeps, filled from the input. A truthy
// timestamp makes util.getTwin trust the entry without asking the chain.
function twinMap(twins) {
  const map = new Map();
  for (const t of twins || []) {
    const keyring = new Keyring({ type: t.keyType || "ed25519" });
    map.set(t.id, {
      twin: { id: t.id, accountId: keyring.encodeAddress(unhex(t.account)), relay: t.relay || "", pk: t.pk ? "0x" + t.pk.replace(/^0x/, "") : null },
      timestamp: 1,
    });
  }
  return map;
}

async function readInput() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  const text = Buffer.concat(chunks).toString();
  return text.trim() ? JSON.parse(text) : {};
}

// A connected Client for twins[0], its chain client answering from `twins`.
async function connectClient(input) {
  const twins = twinMap(input.twins);
  const client = new Client("ws://chain.invalid", input.relayUrl, input.mnemonic, input.sid, input.keyType, 1);
  const ownId = input.twins[0].id;
  // The chain client, answering from the input instead of a tfchain.
  client.tfclient = {
    connect: async () => {},
    disconnect: async () => {},
    twins: {
      getTwinIdByAccountId: async () => ownId,
      get: async ({ id }) => {
        const t = twins.get(id);
        if (!t) throw new Error(`twin ${id} unknown`);
        return { ...t.twin };
      },
      update: async () => { throw new Error("the test twin must already match"); },
    },
  };
  // connect() compares the twin's relay with this spelling of the URL.
  for (const t of twins.values()) if (t.twin.id === ownId) t.twin.relay = input.relayUrl.replace("wss://", "").replace("/", "");
  await client.connect();
  return client;
}

const ops = {
  async keys({ mnemonic }) {
    const ed = pair(mnemonic, "ed25519");
    const sr = pair(mnemonic, "sr25519");
    return {
      ed25519: hex(ed.publicKey),
      ed25519Ss58: ed.address,
      sr25519: hex(sr.publicKey),
      sr25519Ss58: sr.address,
      secp256k1: generatePublicKey(mnemonic).replace(/^0x/, ""),
    };
  },

  async jwt({ mnemonic, keyType, twin, sid, nowMs }) {
    const realNow = Date.now;
    Date.now = () => nowMs;
    try {
      const client = new Client("ws://chain.invalid", `ws://relay-${Math.random()}.invalid`, mnemonic, sid, keyType, 1);
      client.twin = { id: twin };
      client.signer = pair(mnemonic, keyType);
      return { token: client.newJWT(sid) };
    } finally {
      Date.now = realNow;
    }
  },

  async "verify-jwt"({ token, account, keyType }) {
    const [h, c, s] = token.split(".");
    const sig = Buffer.from(s.replace(/-/g, "+").replace(/_/g, "/"), "base64");
    const expected = keyType === "sr25519" ? "s" : "e";
    if (String.fromCharCode(sig[0]) !== expected) return { valid: false };
    const verifier = new Keyring({ type: keyType }).addFromAddress(unhex(account));
    return { valid: verifier.verify(Buffer.from(`${h}.${c}`, "utf8"), sig.subarray(1), verifier.publicKey) };
  },

  async request(input) {
    const twins = twinMap(input.twins);
    const env = new T.Envelope({
      uid: input.uid,
      timestamp: input.timestamp,
      expiration: input.expiration,
      source: new T.Address(input.sid ? { twin: input.source, connection: input.sid } : { twin: input.source }),
      destination: new T.Address({ twin: input.dest }),
      request: new T.Request({ command: input.command }),
    });
    const cenv = new ClientEnvelope(pair(input.mnemonic, input.keyType), env, "ws://chain.invalid", undefined, twins);
    const dest = twins.get(input.dest).twin;
    if (input.encrypt) {
      cenv.cipher = await cenv.encrypt(input.payload, input.mnemonic, dest.pk);
    } else {
      cenv.plain = new Uint8Array(Buffer.from(input.payload));
    }
    const own = twins.get(input.source);
    if (own && own.twin.relay) cenv.relays = own.twin.relay.split("_");
    cenv.signature = cenv.signEnvelope();
    return { envelope: hex(cenv.serializeBinary()) };
  },

  async open({ mnemonic, envelope, twins }) {
    const received = T.Envelope.deserializeBinary(unhex(envelope));
    const cenv = new ClientEnvelope(undefined, received, "ws://chain.invalid", undefined, twinMap(twins));
    const verified = (await cenv.verify()) === true;
    const out = { verified, kind: cenv.request ? "request" : cenv.response ? "response" : cenv.error ? "error" : "other" };
    if (cenv.error) out.error = { code: cenv.error.code, message: cenv.error.message };
    if (verified && cenv.cipher.length > 0) {
      out.payload = Buffer.from(await cenv.decrypt(mnemonic)).toString();
    } else if (cenv.plain.length > 0) {
      out.payload = Buffer.from(cenv.plain).toString();
    }
    return out;
  },

  async call(input) {
    const client = await connectClient(input);
    try {
      const uid = await client.send(input.command, input.payload, input.dest, 1);
      return { result: await client.read(uid) };
    } catch (e) {
      return { error: String(e && e.message || e) };
    } finally {
      // In a batch the next call may connect with the same session id.
      await client.disconnect();
    }
  },
  async batch({ ops: list }) {
    const results = [];
    for (const { op, input } of list || []) {
      if (op === "batch") throw new Error("a batch cannot hold a batch");
      results.push(await run(op, input || {}));
    }
    return { results };
  },
  async bench(input) {
    const client = await connectClient(input);
    const send = () => client.send(input.command, input.payload, input.dest, 1);
    const check = (r) => { if (r === undefined || r === null) throw new Error("empty reply"); };
    // The client's read() looks for the reply once a second, so a call
    // through it takes about a second whatever the wire does. The round
    // trip proper waits for the reply to land in the client's map, then
    // lets read() verify, decrypt and parse it.
    const wire = async () => {
      const uid = await send();
      for (;;) {
        const e = client.responses.get(uid);
        if (e && (e.response || e.error)) break;
        await new Promise((r) => setImmediate(r));
      }
      check(await client.read(uid));
    };
    const shipped = async () => check(await client.read(await send()));
    const timed = async (n, once) => {
      const ms = [];
      for (let i = 0; i < n; i++) {
        const t = process.hrtime.bigint();
        await once();
        ms.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
      ms.sort((a, b) => a - b);
      const pct = (p) => ms[Math.min(ms.length - 1, Math.floor((p / 100) * ms.length))];
      return { calls: ms.length, p50_ms: pct(50), p99_ms: pct(99), max_ms: ms[ms.length - 1] };
    };
    for (let i = 0; i < (input.warmup || 0); i++) await wire();
    const out = await timed(input.calls, wire);
    out.read = await timed(input.readCalls || 0, shipped);
    return out;
  },
};

function run(name, input) {
  const op = ops[name];
  if (!op) throw new Error(`unknown operation ${name}; known: ${Object.keys(ops).join(", ")}`);
  return op(input);
}

async function main() {
  await cryptoWaitReady();
  const out = await run(process.argv[2], await readInput());
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().then(() => process.exit(0), (e) => { console.error(e && e.stack || e); process.exit(1); });
