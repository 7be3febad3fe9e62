// matrix-js-sdk logs every request and every crypto step through `loglevel` loggers that set
// themselves to debug level and bind the console's methods when they are built. Imported before
// the SDK, this keeps only console.warn and console.error, unless JS_SDK_LOG_LEVEL=debug.
if (process.env.JS_SDK_LOG_LEVEL !== "debug") {
    const quiet = () => {};
    console.log = quiet;
    console.info = quiet;
    console.debug = quiet;
    console.trace = quiet;
}
