#!/usr/bin/env node
// The suite's own JavaScript SDK (@adobe/acc-js-sdk), unmodified, against `msgcenter serve`.
//
// Usage: node sdk.js SCENARIO   with MC_URL (server base URL) and, per scenario:
//   token        MC_TOKEN ("login/password")  ofSessionToken -> rtEvent + batchEvent pushes
//   one          MC_TOKEN                        ofSessionToken -> one rtEvent PushEvent
//   logon        MC_LOGIN, MC_PASSWORD          ofUserAndPassword -> Logon -> pushes -> Logoff
//   badpassword  MC_LOGIN, MC_PASSWORD (wrong)  Logon must fail
//   badtoken     MC_TOKEN (unknown session)      PushEvent must fail as "session expired"
//
// Prints one JSON object on stdout (ids as strings, the SOAP calls made, or the error the SDK
// raised) and exits 0 when the scenario behaved as expected, 1 otherwise. The pytest module
// tests/interop/test_interop.py runs it and checks the events in the database.
"use strict";

const sdk = require("@adobe/acc-js-sdk");

const url = process.env.MC_URL;
// The SDK's default HTTP timeout is 5 s; CI machines are small and busy.
const options = { timeout: 30000 };

function event(type, n) {
  return {
    type,
    email: `sdk${n}@example.com`,
    wishedChannel: 0,
    externalId: `sdk-${n}`,
    ctx: { client: { firstname: "Ada", lastname: `Lovelace ${n}` }, orderId: `A${n}` },
  };
}

function recordCalls(client) {
  const calls = [];
  client.registerObserver({
    onSOAPCall: (soapCall) => calls.push(`${soapCall.urn}#${soapCall.methodName}`),
  });
  return calls;
}

// The SDK hands a DOMDocument result back as SimpleJson: {id: [{plId, externalId}, ...]}.
function idsOf(result) {
  const ids = result && result.id;
  const list = Array.isArray(ids) ? ids : ids ? [ids] : [];
  return list.map((i) => ({ plId: String(i.plId), externalId: i.externalId }));
}

async function pushAll(client) {
  const out = {};
  out.rtId = await client.NLWS.nmsRtEvent.pushEvent(event("order_confirmation", 1));
  out.batchId = await client.NLWS.nmsBatchEvent.pushEvent(event("newsletter", 2));
  const rtIds = await client.NLWS.nmsRtEvent.pushEvents({
    rtEvent: [event("order_confirmation", 3), event("order_confirmation", 4)],
  });
  const batchIds = await client.NLWS.nmsBatchEvent.pushEvents({
    batchEvent: [event("newsletter", 5), event("newsletter", 6), event("newsletter", 7)],
  });
  out.rtIds = idsOf(rtIds);
  out.batchIds = idsOf(batchIds);
  return out;
}

function describeError(err) {
  return {
    name: err.name,
    statusCode: err.statusCode,
    errorCode: err.errorCode,
    faultCode: err.faultCode,
    faultString: err.faultString,
    detail: err.detail,
    message: err.message,
  };
}

async function connected(params) {
  const client = await sdk.init(params);
  const calls = recordCalls(client);
  return { client, calls };
}

const scenarios = {
  async token() {
    const params = sdk.ConnectionParameters.ofSessionToken(url, process.env.MC_TOKEN, options);
    const { client, calls } = await connected(params);
    await client.logon();
    const out = await pushAll(client);
    await client.logoff();
    return { ok: true, ...out, calls };
  },

  async one() {
    const params = sdk.ConnectionParameters.ofSessionToken(url, process.env.MC_TOKEN, options);
    const { client, calls } = await connected(params);
    await client.logon();
    const rtId = await client.NLWS.nmsRtEvent.pushEvent(event("order_confirmation", 8));
    return { ok: true, rtId, calls };
  },

  async logon() {
    const params = sdk.ConnectionParameters.ofUserAndPassword(
      url, process.env.MC_LOGIN, process.env.MC_PASSWORD, options);
    const { client, calls } = await connected(params);
    await client.logon();
    const sessionToken = client._sessionToken;
    const hasSecurityToken = Boolean(client._securityToken);
    const out = await pushAll(client);
    await client.logoff();
    return { ok: true, ...out, calls, sessionToken, hasSecurityToken };
  },

  async badpassword() {
    const params = sdk.ConnectionParameters.ofUserAndPassword(
      url, process.env.MC_LOGIN, process.env.MC_PASSWORD, options);
    const { client, calls } = await connected(params);
    try {
      await client.logon();
    } catch (err) {
      return { ok: true, error: describeError(err), calls };
    }
    return { ok: false, reason: "logon succeeded with a wrong password", calls };
  },

  async badtoken() {
    const params = sdk.ConnectionParameters.ofSessionToken(url, process.env.MC_TOKEN, options);
    const { client, calls } = await connected(params);
    await client.logon();
    try {
      await client.NLWS.nmsRtEvent.pushEvent(event("order_confirmation", 9));
    } catch (err) {
      return { ok: true, error: describeError(err), calls };
    }
    return { ok: false, reason: "pushEvent succeeded with an invalid session token", calls };
  },
};

async function main() {
  const name = process.argv[2];
  const scenario = scenarios[name];
  if (!scenario || !url) {
    console.error(`usage: MC_URL=... node sdk.js ${Object.keys(scenarios).join("|")}`);
    return 2;
  }
  let result;
  try {
    result = await scenario();
  } catch (err) {
    result = { ok: false, error: describeError(err) };
  }
  process.stdout.write(JSON.stringify(result) + "\n");
  return result.ok ? 0 : 1;
}

main().then((code) => { process.exitCode = code; });
