import { defineConfig } from "vite";

export default defineConfig({
    base: "./",
    build: {
        outDir: "dist",
        emptyOutDir: true,
        // matrix-js-sdk is large; a test page needs no splitting advice
        chunkSizeWarningLimit: 8192,
    },
    server: { host: "127.0.0.1" },
});
