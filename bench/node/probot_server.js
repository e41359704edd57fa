// Probot 14 as its users deploy it in their own server: createNodeMiddleware with an app that registers a
// no-op handler, so Probot verifies, parses and routes every delivery and answers when its handlers are done.
// Arguments: --port PORT. Environment: WEBHOOK_SECRET, PRIVATE_KEY (a throwaway RSA key; Probot requires one).
import { createServer } from "node:http";
import { createNodeMiddleware, createProbot } from "probot";

const port = Number(process.argv[process.argv.indexOf("--port") + 1]);
const probot = createProbot({
  overrides: { appId: 1, privateKey: process.env.PRIVATE_KEY, secret: process.env.WEBHOOK_SECRET, logLevel: "warn" },
});
const app = (application) => {
  application.on("issues.opened", async () => {});
};
const middleware = await createNodeMiddleware(app, { probot, webhooksPath: "/webhook" });
createServer((request, response) => {
  if (request.url === "/healthz") {
    response.writeHead(200).end("ok");
    return;
  }
  middleware(request, response, () => response.writeHead(404).end());
}).listen(port, "127.0.0.1");
