// A webhook receiver for tests/api/webhooks_interop.rs: verifies every delivery with the
// Standard Webhooks reference library (npm `standardwebhooks`), answers 204 if it verifies
// and 400 otherwise, and prints one JSON line per request to stdout, after a first line
// with its port. Usage: node webhook_receiver.mjs SECRET [SECRET...] (whsec_…).
import http from "node:http";
import { Webhook } from "standardwebhooks";

const hooks = process.argv.slice(2).map((s) => new Webhook(s));

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    let type = null;
    const verified_by = hooks.map((hook) => {
      try {
        type = hook.verify(body, req.headers).type;
        return true;
      } catch {
        return false;
      }
    });
    console.log(JSON.stringify({ id: req.headers["webhook-id"], type, verified_by }));
    res.writeHead(verified_by.some(Boolean) ? 204 : 400).end();
  });
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
