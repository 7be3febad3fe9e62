// Mounts Hydrogen's full application (login, session picker, room list, timeline, composer),
// assembled from the hydrogen-view-sdk package's exports, in the same way as Hydrogen's own
// src/platform/web/main.js.
import {
    Platform,
    createNavigation,
    createRouter,
    RootViewModel,
    FeatureSet,
} from "hydrogen-view-sdk";
import downloadSandboxPath from "hydrogen-view-sdk/download-sandbox.html?url";
import workerPath from "hydrogen-view-sdk/main.js?url";
import olmWasmPath from "@matrix-org/olm/olm.wasm?url";
import olmJsPath from "@matrix-org/olm/olm.js?url";
import olmLegacyJsPath from "@matrix-org/olm/olm_legacy.js?url";
import "hydrogen-view-sdk/assets/theme-element-light.css";

const assetPaths = {
    downloadSandbox: downloadSandboxPath,
    worker: workerPath,
    olm: {
        wasm: olmWasmPath,
        legacyBundle: olmLegacyJsPath,
        wasmBundle: olmJsPath,
    },
    // emitted next to index.html by vite.config.js
    serviceWorker: "sw.js",
};

// The homeserver field starts with ?hs=URL when given, so a person can open the app against any
// server; the automated test types the URL into the login form anyway.
const params = new URLSearchParams(window.location.search);
const config = {
    defaultHomeServer: params.get("hs") || "",
    push: {},
};

async function main() {
    const container = document.getElementById("app");
    const platform = new Platform({
        container,
        assetPaths,
        config,
        options: { development: import.meta.env.DEV },
    });
    window.__hydrogenPlatform = platform;
    await platform.init();
    const features = await FeatureSet.load(platform.settingsStorage);
    const navigation = createNavigation();
    platform.setNavigation(navigation);
    const urlRouter = createRouter({ navigation, history: platform.history });
    urlRouter.attach();
    const vm = new RootViewModel({ platform, urlRouter, navigation, features });
    await vm.load();
    platform.createAndMountRootView(vm);
    window.__hydrogenReady = true;
}

main().catch((err) => {
    console.error(`hydrogen main failed: ${err.message}\n${err.stack}`);
    window.__hydrogenError = String(err && err.message);
});
