import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const swPath = fileURLToPath(new URL("./node_modules/hydrogen-view-sdk/lib-build/sw.js", import.meta.url));

// Hydrogen registers a service worker at ./sw.js (for authenticated media); emit the SDK's copy.
function hydrogenServiceWorker() {
    return {
        name: "hydrogen-service-worker",
        generateBundle() {
            this.emitFile({ type: "asset", fileName: "sw.js", source: readFileSync(swPath, "utf8") });
        },
    };
}

export default defineConfig({
    base: "./",
    plugins: [hydrogenServiceWorker()],
    build: {
        outDir: "dist",
        emptyOutDir: true,
        // olm.wasm and friends must stay separate files, not data: URLs
        assetsInlineLimit: 0,
        chunkSizeWarningLimit: 4096,
    },
    server: { host: "127.0.0.1" },
    preview: { host: "127.0.0.1", port: 4173, strictPort: true },
});
