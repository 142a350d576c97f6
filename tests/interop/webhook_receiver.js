// A webhook receiver as an integrator would write it in Node: the public
// `standardwebhooks` package verifies every request (signature and timestamp).
// Usage: MC_WEBHOOK_SECRET=whsec_... node webhook_receiver.js
// Prints "listening <port>", then one JSON line per request: {ok, id, type, plId, error}.
const http = require("http");
const { Webhook } = require("standardwebhooks");

const wh = new Webhook(process.env.MC_WEBHOOK_SECRET);
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    let line;
    try {
      const payload = wh.verify(body, req.headers);  // throws on a bad signature or time
      line = { ok: true, id: req.headers["webhook-id"], type: payload.type,
               plId: payload.data.plId };
      res.writeHead(200).end("ok");
    } catch (err) {
      line = { ok: false, id: req.headers["webhook-id"], error: String(err.message || err) };
      res.writeHead(400).end("bad signature");
    }
    process.stdout.write(JSON.stringify(line) + "\n");
  });
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
