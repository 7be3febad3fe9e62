// A tiny static file server for the built app (dist/), bound to 127.0.0.1.
import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { extname, join, normalize, resolve } from "node:path";

const TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ico": "image/x-icon",
};

export function serveStatic(root, port = 0) {
    const base = resolve(root);
    const server = createServer(async (req, res) => {
        try {
            const url = new URL(req.url, "http://127.0.0.1");
            let path = normalize(decodeURIComponent(url.pathname));
            if (path.endsWith("/")) path += "index.html";
            const file = join(base, path);
            if (!file.startsWith(base)) {
                res.writeHead(403).end();
                return;
            }
            const info = await stat(file).catch(() => null);
            if (!info || !info.isFile()) {
                res.writeHead(404, { "Content-Type": "text/plain" }).end("not found");
                return;
            }
            const body = await readFile(file);
            res.writeHead(200, {
                "Content-Type": TYPES[extname(file)] || "application/octet-stream",
                "Cache-Control": "no-store",
            });
            res.end(body);
        } catch (err) {
            res.writeHead(500).end(String(err));
        }
    });
    return new Promise((resolvePromise, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => {
            const { port: actual } = server.address();
            resolvePromise({ server, url: `http://127.0.0.1:${actual}/` });
        });
    });
}

// `node test/serve.mjs [port]` serves dist/ until killed.
if (import.meta.url === `file://${process.argv[1]}`) {
    const port = Number(process.argv[2] || 4173);
    const root = new URL("../dist/", import.meta.url).pathname;
    serveStatic(root, port).then(({ url }) => console.log(`serving ${root} at ${url}`));
}
