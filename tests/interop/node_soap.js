#!/usr/bin/env node
// node-soap (`soap` on npm), generated from our served WSDL, against `msgcenter serve`.
//
// Usage: node node_soap.js WSDL_URL TOKEN BAD_TOKEN
//   pushes one event (PushEvent), a collection of two (PushEvents), then an event without
//   `type` (must be a Client fault) and one with BAD_TOKEN (must be a fault).
// xsd:long ids are read with `customDeserializer: {long: BigInt}`: node-soap's default turns
// them into Numbers, which lose precision above 2^53. Prints one JSON object (ids as
// strings) and exits 0 when every step behaved as expected, 1 otherwise.
"use strict";

const soap = require("soap");

const [wsdl, token, badToken] = process.argv.slice(2);
const root = wsdl && wsdl.includes("batchEvent") ? "batchEvent" : "rtEvent";

function eventXml(type, n) {
  const typeAttr = type ? ` type="${type}"` : "";
  return `<${root}${typeAttr} email="node${n}@example.com" wishedChannel="0" externalId="node-${n}">` +
    `<ctx><client><firstname>Ada</firstname><lastname>Lovelace ${n}</lastname></client></ctx>` +
    `</${root}>`;
}

// Every <id> in the raw response, reading plId / externalId as attributes or children.
function idsOf(rawXml) {
  const ids = [];
  const re = /<(?:\w+:)?id\b([^>]*?)(?:\/>|>([\s\S]*?)<\/(?:\w+:)?id>)/g;
  for (const m of rawXml.matchAll(re)) {
    const pick = (name) => {
      const attr = new RegExp(`\\b${name}=["']([^"']*)["']`).exec(m[1]);
      if (attr) return attr[1];
      const child = new RegExp(`<(?:\\w+:)?${name}\\b[^>]*>([^<]*)<`).exec(m[2] || "");
      return child ? child[1].trim() : "";
    };
    ids.push({ plId: pick("plId"), externalId: pick("externalId") });
  }
  return ids;
}

// The suite's responses type every scalar (`<plId xsi:type="xsd:long">`): node-soap then
// keeps the attributes beside the value, as {attributes, $value}.
function valueOf(v) {
  return v !== null && typeof v === "object" && "$value" in v ? v.$value : v;
}

function faultOf(err) {
  const fault = err && err.root && err.root.Envelope && err.root.Envelope.Body &&
    err.root.Envelope.Body.Fault;
  if (!fault) return { error: String(err && err.message) };
  return {
    faultcode: valueOf(fault.faultcode),
    faultstring: valueOf(fault.faultstring),
    detail: valueOf(fault.detail),
  };
}

async function expectFault(client, args) {
  try {
    await client.PushEventAsync(args);
    return null;
  } catch (err) {
    return faultOf(err);
  }
}

async function main() {
  if (!wsdl || !token || !badToken) {
    console.error("usage: node node_soap.js WSDL_URL TOKEN BAD_TOKEN");
    return 2;
  }
  const result = { ok: false, service: root };
  try {
    const client = await soap.createClientAsync(wsdl, {
      customDeserializer: { long: (text) => BigInt(text) },
    });
    const [one] = await client.PushEventAsync({
      sessiontoken: token,
      domEvent: { $xml: eventXml("order_confirmation", 1) },
    });
    const plId = valueOf(one.plId);
    result.plIdJsType = typeof plId;
    result.plId = String(plId);

    const [, rawResponse] = await client.PushEventsAsync({
      sessiontoken: token,
      domEventCollection: {
        $xml: `<Events>${eventXml("order_confirmation", 2)}${eventXml("order_confirmation", 3)}</Events>`,
      },
    });
    result.ids = idsOf(rawResponse);

    result.missingTypeFault = await expectFault(client, {
      sessiontoken: token, domEvent: { $xml: eventXml("", 4) },
    });
    result.badTokenFault = await expectFault(client, {
      sessiontoken: badToken, domEvent: { $xml: eventXml("order_confirmation", 5) },
    });
    result.ok = result.plIdJsType === "bigint" && result.ids.length === 2 &&
      Boolean(result.missingTypeFault && result.missingTypeFault.faultcode) &&
      Boolean(result.badTokenFault && result.badTokenFault.faultcode);
  } catch (err) {
    result.error = String(err && err.stack || err);
  }
  process.stdout.write(JSON.stringify(result) + "\n");
  return result.ok ? 0 : 1;
}

main().then((code) => { process.exitCode = code; });
