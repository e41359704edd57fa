// @octokit/webhooks in plain node:http: read the body, verifyAndReceive (HMAC check, parse, emit to a no-op
// handler), answer 200. The floor of a Node.js webhook receiver. Arguments: --port PORT. Environment: WEBHOOK_SECRET.
import { createServer } from "node:http";
import { Webhooks } from "@octokit/webhooks";

const port = Number(process.argv[process.argv.indexOf("--port") + 1]);
const webhooks = new Webhooks({ secret: process.env.WEBHOOK_SECRET });
webhooks.on("issues.opened", async () => {});

createServer(async (request, response) => {
  if (request.url === "/healthz") {
    response.writeHead(200).end("ok");
    return;
  }
  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  try {
    await webhooks.verifyAndReceive({
      id: request.headers["x-github-delivery"],
      name: request.headers["x-github-event"],
      payload: Buffer.concat(chunks).toString("utf8"),
      signature: request.headers["x-hub-signature-256"],
    });
    response.writeHead(200).end("ok");
  } catch {
    response.writeHead(400).end("refused");
  }
}).listen(port, "127.0.0.1");
