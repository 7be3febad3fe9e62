// Conifer bugs a test has found and that are not fixed yet. `.ci/clients.sh` sets
// CONIFER_KNOWN_BUGS=1 when it runs this suite against `conifer run`, so those tests are
// reported as skipped there, with the bug as the reason; against any other server (Synapse, when
// the suite is validated) every test runs.
const BUGS = {
    threadsList:
        "Conifer bug: GET /_matrix/client/v1/rooms/{roomId}/threads (Client-Server API v1.4, " +
        "Threading: 'Fetching all threads in a room') answers 404 M_UNRECOGNIZED",
};

/** The `skip` option of a test: the bug's description when running against Conifer, else false. */
export function knownBug(name) {
    if (!(name in BUGS)) throw new Error(`no known bug named ${name}`);
    return process.env.CONIFER_KNOWN_BUGS === "1" ? BUGS[name] : false;
}
