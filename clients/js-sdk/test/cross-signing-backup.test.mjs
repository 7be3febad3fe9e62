// Cross-signing, secret storage and server-side key backup with matrix-js-sdk's Rust crypto, the
// way Element sets up "recovery": bootstrap cross-signing (the device-signing-key upload goes
// through user-interactive auth when the server asks for it), put the private keys in secret
// storage, create a key backup; then a new login enters the recovery key, restores the backup,
// decrypts the messages sent before it existed, and gets its own device cross-signed.
import test from "node:test";
import assert from "node:assert/strict";
import { EventType, Preset } from "matrix-js-sdk";
import { decodeRecoveryKey } from "matrix-js-sdk/lib/crypto-api/index.js";
import {
    homeserver, register, login, ok, startClient, stopAll, waitForRoom, waitForInvite,
    waitForDecrypted, waitFor, PASSWORD,
} from "./lib.mjs";

const HS = homeserver();

/** Element's answer to the device-signing-key upload: no auth first, a password if asked. */
function uiaPassword(userId, record) {
    return async (makeRequest) => {
        try {
            await makeRequest(null);
            record.push("no-auth");
        } catch (e) {
            if (e.httpStatus !== 401 || !e.data?.flows) throw e;
            const flows = e.data.flows.map((f) => f.stages.join(","));
            assert.ok(flows.includes("m.login.password"), `UIA flows offer m.login.password: ${flows}`);
            await makeRequest({
                type: "m.login.password",
                identifier: { type: "m.id.user", user: userId },
                password: PASSWORD,
                session: e.data.session,
            });
            record.push("password");
        }
    };
}

/** Crypto callbacks holding the secret storage (recovery) key in memory, as an app would. */
function keyHolder() {
    const holder = { key: null };
    holder.callbacks = {
        cacheSecretStorageKey: (keyId, _info, key) => {
            holder.key = [keyId, key];
        },
        getSecretStorageKey: async ({ keys }) => (holder.key && holder.key[0] in keys ? holder.key : null),
    };
    return holder;
}

test("cross-signing bootstrap, secret storage, key backup and restore on a new login", async (t) => {
    const [a, b] = await Promise.all([register(HS, "alice"), register(HS, "bob")]);
    const holder = keyHolder();
    const alice = await startClient(HS, a, { cryptoCallbacks: holder.callbacks });
    const bob = await startClient(HS, b);
    let alice2;
    t.after(() => stopAll(alice, bob, alice2));
    const crypto = alice.getCrypto();

    // Cross-signing: keys created, uploaded (/keys/device_signing/upload) and this device signed
    // with the self-signing key (/keys/signatures/upload).
    assert.equal(await crypto.isCrossSigningReady(), false);
    const uia = [];
    await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: uiaPassword(a.user_id, uia) });
    assert.equal(uia.length, 1, "the device signing keys were uploaded once");
    assert.equal(await crypto.isCrossSigningReady(), true);
    const status = await crypto.getCrossSigningStatus();
    assert.equal(status.publicKeysOnDevice, true);
    assert.deepEqual(status.privateKeysCachedLocally, { masterKey: true, selfSigningKey: true, userSigningKey: true });
    // The SDK sees the signature once its own /keys/query has run (the upload changes the
    // user's device list, which /sync announces).
    const own = await waitFor(async () => {
        const s = await crypto.getDeviceVerificationStatus(a.user_id, a.device_id);
        return s?.crossSigningVerified ? s : null;
    }, "own device cross-signed");
    assert.equal(own.isVerified(), true);

    // What another user gets from /keys/query: alice's master and self-signing keys, and her
    // device signed by the self-signing key.
    const query = await ok(HS, "POST", "/_matrix/client/v3/keys/query", { token: b.access_token, body: { device_keys: { [a.user_id]: [] } } });
    const master = query.master_keys?.[a.user_id];
    const selfSigning = query.self_signing_keys?.[a.user_id];
    assert.ok(master?.usage?.includes("master"), `master key: ${JSON.stringify(query.master_keys)}`);
    assert.ok(selfSigning?.usage?.includes("self_signing"));
    assert.equal(query.user_signing_keys?.[a.user_id], undefined, "the user-signing key goes to its owner only");
    const sskId = Object.keys(selfSigning.keys)[0];
    assert.ok(query.device_keys[a.user_id][a.device_id].signatures[a.user_id][sskId], "device signed by the self-signing key");
    const mine = await ok(HS, "POST", "/_matrix/client/v3/keys/query", { token: a.access_token, body: { device_keys: { [a.user_id]: [] } } });
    assert.ok(mine.user_signing_keys?.[a.user_id]?.usage?.includes("user_signing"), "the owner sees the user-signing key");

    // Secret storage (a new recovery key) and a new key backup.
    const recoveryKey = await crypto.createRecoveryKeyFromPassphrase();
    await crypto.bootstrapSecretStorage({ createSecretStorageKey: async () => recoveryKey, setupNewKeyBackup: true });
    assert.equal(await crypto.isSecretStorageReady(), true);
    const version = await crypto.getActiveSessionBackupVersion();
    assert.ok(version, "a key backup version is active");
    const info = await ok(HS, "GET", "/_matrix/client/v3/room_keys/version", { token: a.access_token });
    assert.equal(info.version, version);
    assert.equal(info.algorithm, "m.megolm_backup.v1.curve25519-aes-sha2");
    const defaultKey = await ok(HS, "GET", `/_matrix/client/v3/user/${encodeURIComponent(a.user_id)}/account_data/m.secret_storage.default_key`, { token: a.access_token });
    assert.ok(defaultKey.key, "m.secret_storage.default_key in account data");

    // An encrypted conversation: both sessions (alice's and bob's) end up in the backup.
    const { room_id: roomId } = await alice.createRoom({
        preset: Preset.PrivateChat,
        invite: [b.user_id],
        initial_state: [{ type: EventType.RoomEncryption, state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    await waitForInvite(bob, roomId);
    await bob.joinRoom(roomId);
    const aliceRoom = await waitForRoom(alice, roomId);
    await waitFor(() => aliceRoom.getMember(b.user_id)?.membership === "join", "bob's join at alice");
    // bob's SDK, which now tracks alice's devices, sees hers as signed by its owner.
    const seenByBob = await waitFor(() => bob.getCrypto().getDeviceVerificationStatus(a.user_id, a.device_id), "alice's device at bob");
    assert.equal(seenByBob.signedByOwner, true);
    const sent = [];
    for (const [from, to, body] of [[alice, bob, "backed-up secret from alice"], [bob, alice, "backed-up secret from bob"]]) {
        const { event_id } = await from.sendTextMessage(roomId, body);
        sent.push([event_id, body]);
        assert.equal((await waitForDecrypted(to, roomId, event_id)).getContent().body, body);
    }
    const backedUp = await waitFor(async () => {
        const keys = await ok(HS, "GET", `/_matrix/client/v3/room_keys/keys?version=${encodeURIComponent(version)}`, { token: a.access_token });
        const sessions = Object.keys(keys.rooms?.[roomId]?.sessions || {});
        return sessions.length >= 2 ? keys.rooms[roomId].sessions : null;
    }, "both room keys in the backup");
    for (const s of Object.values(backedUp)) {
        assert.ok(s.session_data?.ciphertext && s.session_data?.ephemeral && s.session_data?.mac, "backed-up keys are encrypted");
    }

    // A new login: it has no room keys until it restores the backup with the recovery key.
    const a2 = await login(HS, a.user_id);
    const holder2 = keyHolder();
    alice2 = await startClient(HS, a2, { cryptoCallbacks: holder2.callbacks });
    const crypto2 = alice2.getCrypto();
    await waitForRoom(alice2, roomId);
    const undecryptable = await waitFor(() => alice2.getRoom(roomId).findEventById(sent[0][0]), "old message at the new login");
    await waitFor(() => !undecryptable.isBeingDecrypted(), "a decryption attempt");
    assert.equal(undecryptable.isDecryptionFailure(), true, "the new login cannot read old messages before restoring");
    assert.equal((await crypto2.getDeviceVerificationStatus(a.user_id, a2.device_id)).crossSigningVerified, false);

    // The person types the recovery key (its printable form); it unlocks the default key.
    holder2.key = [defaultKey.key, decodeRecoveryKey(recoveryKey.encodedPrivateKey)];
    await crypto2.loadSessionBackupPrivateKeyFromSecretStorage();
    const check = await crypto2.checkKeyBackupAndEnable();
    assert.equal(check?.backupInfo?.version, version);
    const restored = await crypto2.restoreKeyBackup();
    assert.ok(restored.imported >= 2, `imported ${restored.imported} of ${restored.total} keys`);
    for (const [eventId, body] of sent) {
        const ev = await waitForDecrypted(alice2, roomId, eventId);
        assert.equal(ev.getContent().body, body);
    }

    // The recovery key also unlocks the cross-signing keys: the new device signs itself (once
    // it has the public keys from /keys/query, against which it checks the private ones).
    await waitFor(async () => (await crypto2.getCrossSigningStatus()).publicKeysOnDevice, "public cross-signing keys at the new login");
    await crypto2.bootstrapCrossSigning({ authUploadDeviceSigningKeys: uiaPassword(a.user_id, []) });
    assert.equal(await crypto2.isCrossSigningReady(), true);
    const own2 = await waitFor(async () => {
        const s = await crypto2.getDeviceVerificationStatus(a.user_id, a2.device_id);
        return s?.crossSigningVerified ? s : null;
    }, "the new device cross-signed");
    assert.equal(own2.crossSigningVerified, true);
    // The first device sees the second as verified by cross-signing.
    await crypto.getUserDeviceInfo([a.user_id], true);
    const fromFirst = await waitFor(async () => {
        const s = await crypto.getDeviceVerificationStatus(a.user_id, a2.device_id);
        return s?.crossSigningVerified ? s : null;
    }, "the new device verified at the first");
    assert.equal(fromFirst.crossSigningVerified, true);
});
