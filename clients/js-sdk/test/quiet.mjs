// matrix-js-sdk logs every request and every crypto step through `loglevel` loggers that set
// themselves to debug level and bind the console's methods when they are built, and the Rust
// crypto stack warns about every expected decryption failure. Imported before the SDK, this
// keeps console.error only; JS_SDK_LOG_LEVEL=warn keeps warnings too, =debug everything.
const level = process.env.JS_SDK_LOG_LEVEL || "error";
if (level !== "debug") {
    const quiet = () => {};
    console.log = quiet;
    console.info = quiet;
    console.debug = quiet;
    console.trace = quiet;
    if (level !== "warn") console.warn = quiet;
}
