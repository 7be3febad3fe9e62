//! Registration, login, logout, whoami, passwords, devices and the
//! shared-secret admin registration that existing tools use.

use super::{Hs, Resp};
use crate::error::{ApiResult, MatrixError};
use crate::extract::Query;
use crate::extract::{Auth, Json as Body};
use crate::ratelimit::Action;
use crate::{now_ms, password, random_token, Homeserver};
use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub fn routes() -> Router<Arc<Homeserver>> {
    Router::new()
        .route("/register", post(register))
        .route("/register/available", get(available))
        .route("/login", get(login_flows).post(login))
        .route("/logout", post(logout))
        .route("/logout/all", post(logout_all))
        .route("/account/whoami", get(whoami))
        .route("/account/password", post(change_password))
        .route("/account/deactivate", post(deactivate))
        .route("/devices", get(devices))
        .route(
            "/devices/:device",
            get(device).put(update_device).delete(delete_device),
        )
        .route("/delete_devices", post(delete_devices))
}

pub fn v1_routes() -> Router<Arc<Homeserver>> {
    Router::new().route("/login/get_token", post(get_login_token))
}

pub fn admin_routes() -> Router<Arc<Homeserver>> {
    Router::new().route("/register", get(admin_nonce).post(admin_register))
}

/// Localparts: lowercase letters, digits and `._=-/+`, as the spec's
/// historical user-ID grammar allows.
fn valid_localpart(l: &str) -> bool {
    !l.is_empty()
        && l.bytes().all(
            |b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'),
        )
}

fn full_user_id(hs: &Homeserver, localpart: &str) -> ApiResult<String> {
    let id = format!("@{localpart}:{}", hs.server_name);
    if !valid_localpart(localpart) || id.len() > 255 {
        return Err(MatrixError::invalid_username(
            "user names may only contain a-z, 0-9 and ._=-/+",
        ));
    }
    Ok(id)
}

#[derive(Deserialize)]
struct RegisterBody {
    username: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    inhibit_login: bool,
    auth: Option<Value>,
}

#[derive(Deserialize)]
struct RegisterQuery {
    kind: Option<String>,
}

/// How long a user-interactive authentication session is remembered after
/// it starts, finished or not.
const UIA_SESSION_TTL: Duration = Duration::from_secs(30 * 60);
/// Most sessions remembered at once; the least recently used leaves first.
const UIA_SESSION_CAP: usize = 10_000;

/// A user-interactive authentication session: the stages completed so far
/// for one operation (and, for authenticated endpoints, one user).
struct UiaSession {
    /// The homeserver that issued it (its address: several can share a process).
    server: usize,
    operation: String,
    user: Option<String>,
    completed: Vec<String>,
    started: Instant,
    /// What the operation answered once it succeeded (`/register` replays it).
    result: Option<Value>,
}

fn uia_sessions() -> &'static Mutex<hashlink::LruCache<String, UiaSession>> {
    static SESSIONS: OnceLock<Mutex<hashlink::LruCache<String, UiaSession>>> = OnceLock::new();
    SESSIONS.get_or_init(|| Mutex::new(hashlink::LruCache::new(UIA_SESSION_CAP)))
}

fn server_key(hs: &Homeserver) -> usize {
    hs as *const Homeserver as usize
}

/// What an endpoint asks of user-interactive authentication.
struct Uia<'a> {
    /// Each flow is a list of stages to complete in order.
    flows: &'a [&'a [&'a str]],
    /// Which request the session is for: a session cannot be carried over to
    /// another operation.
    operation: String,
    /// The authenticated user, for endpoints that need an access token.
    user: Option<&'a str>,
}

impl Uia<'_> {
    /// The live session `id` if it was issued by this server for this
    /// operation and user.
    fn session<'s>(
        &self,
        hs: &Homeserver,
        sessions: &'s mut hashlink::LruCache<String, UiaSession>,
        id: &str,
    ) -> Option<&'s mut UiaSession> {
        let live = sessions.get(id).is_some_and(|s| {
            s.server == server_key(hs)
                && s.operation == self.operation
                && s.user.as_deref() == self.user
                && s.started.elapsed() < UIA_SESSION_TTL
        });
        if !live {
            return None;
        }
        sessions.get_mut(id)
    }

    /// The 401 body: flows, params, session and the stages completed.
    fn body(&self, session: &str, completed: &[String]) -> Value {
        let flows: Vec<Value> = self
            .flows
            .iter()
            .map(|stages| json!({ "stages": stages }))
            .collect();
        json!({ "flows": flows, "params": {}, "session": session, "completed": completed })
    }

    fn complete(&self, completed: &[String]) -> bool {
        self.flows
            .iter()
            .any(|f| f.iter().all(|s| completed.iter().any(|c| c == s)))
    }

    /// Whether `stage` may be attempted next: some flow starts with the
    /// completed stages, in order, and continues with `stage`.
    fn may_attempt(&self, completed: &[String], stage: &str) -> bool {
        self.flows.iter().any(|f| {
            f.len() > completed.len()
                && f.iter().zip(completed).all(|(a, b)| a == b)
                && f[completed.len()] == stage
        })
    }
}

/// The stored answer of a finished session of `uia`, if `auth` names one.
fn uia_result(hs: &Homeserver, uia: &Uia<'_>, auth: Option<&Value>) -> Option<Value> {
    let id = auth?.get("session")?.as_str()?;
    let mut sessions = uia_sessions().lock();
    uia.session(hs, &mut sessions, id)?.result.clone()
}

/// Remembers what the operation answered for a finished session.
fn uia_store_result(hs: &Homeserver, uia: &Uia<'_>, id: &str, result: &Value) {
    let mut sessions = uia_sessions().lock();
    if let Some(s) = uia.session(hs, &mut sessions, id) {
        s.result = Some(result.clone());
    }
}

/// Runs one round of user-interactive authentication with the request's
/// `auth` dict. Answers the session ID once every stage of a flow is
/// complete; otherwise the 401 to send: a plain challenge (no `errcode`)
/// while stages remain, or the challenge with `errcode` when an attempted
/// stage failed.
async fn user_interactive_auth(
    hs: &Homeserver,
    uia: &Uia<'_>,
    auth: Option<&Value>,
) -> ApiResult<String> {
    let auth = match auth {
        None | Some(Value::Null) => None,
        Some(Value::Object(a)) => Some(a),
        Some(_) => return Err(MatrixError::bad_json("auth must be an object")),
    };
    let given = match auth.and_then(|a| a.get("session")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(MatrixError::bad_json("auth.session must be a string")),
    };
    let stage = match auth.and_then(|a| a.get("type")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(MatrixError::bad_json("auth.type must be a string")),
    };
    // A session this server does not know (never issued, expired, or for
    // another operation or user) is replaced by a fresh one.
    let (id, mut completed) = {
        let mut sessions = uia_sessions().lock();
        match given.and_then(|g| uia.session(hs, &mut sessions, g).map(|s| (g, s))) {
            Some((g, s)) => (g.to_owned(), s.completed.clone()),
            None => (random_token(24), Vec::new()),
        }
    };
    let failure = match stage {
        // Completed stages are not attempted again.
        Some(stage) if completed.iter().any(|c| c == stage) => None,
        Some(stage) if !uia.may_attempt(&completed, stage) => Some(MatrixError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "M_UNRECOGNIZED",
            format!("{stage} is not the next stage of any flow offered"),
        )),
        Some("m.login.dummy") => None,
        Some("m.login.password") => {
            check_password_stage(hs, uia.user, auth.expect("a stage comes from auth")).await?
        }
        Some(other) => Some(MatrixError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "M_UNRECOGNIZED",
            format!("unsupported authentication type {other}"),
        )),
        None => None,
    };
    if let (Some(stage), None) = (stage, &failure) {
        if !completed.iter().any(|c| c == stage) {
            completed.push(stage.to_owned());
        }
    }
    {
        let mut sessions = uia_sessions().lock();
        match uia.session(hs, &mut sessions, &id) {
            Some(s) => s.completed = completed.clone(),
            None => {
                sessions.insert(
                    id.clone(),
                    UiaSession {
                        server: server_key(hs),
                        operation: uia.operation.clone(),
                        user: uia.user.map(str::to_owned),
                        completed: completed.clone(),
                        started: Instant::now(),
                        result: None,
                    },
                );
            }
        }
    }
    if let Some(e) = failure {
        return Err(e.with_extra(uia.body(&id, &completed)));
    }
    if uia.complete(&completed) {
        return Ok(id);
    }
    Err(MatrixError::uia_challenge(uia.body(&id, &completed)))
}

/// Checks an `m.login.password` stage for `user`: `None` when it passes,
/// the failure (401 `M_FORBIDDEN`) when the identifier names someone else or
/// the password is wrong.
async fn check_password_stage(
    hs: &Homeserver,
    user: Option<&str>,
    auth: &serde_json::Map<String, Value>,
) -> ApiResult<Option<MatrixError>> {
    let failed = || {
        Some(MatrixError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "M_FORBIDDEN",
            "invalid user name or password",
        ))
    };
    let Some(user) = user else {
        return Ok(failed());
    };
    // Re-authentication is of the logged-in user: an identifier may be left out.
    let named = match (
        auth.get("identifier"),
        auth.get("user").and_then(Value::as_str),
    ) {
        (None, None) => user.to_owned(),
        (identifier, legacy) => match login_user(hs, identifier, legacy) {
            Ok(u) => u,
            Err(_) => return Ok(failed()),
        },
    };
    if named != user {
        return Ok(failed());
    }
    hs.limits.check(Action::Login, user)?;
    let Some(password) = auth.get("password").and_then(Value::as_str) else {
        return Ok(failed());
    };
    let ok = match hs.store.user(user)?.and_then(|u| u.password_hash) {
        Some(h) => password::verify(password.to_owned(), h).await,
        None => false,
    };
    Ok(if ok { None } else { failed() })
}

/// The only registration flow: one dummy stage.
const REGISTER_FLOWS: &[&[&str]] = &[&["m.login.dummy"]];

async fn register(hs: Hs, Query(q): Query<RegisterQuery>, Body(body): Body<RegisterBody>) -> Resp {
    if q.kind.as_deref() == Some("guest") {
        return Err(MatrixError::guest_access_forbidden(
            "guest access is not enabled",
        ));
    }
    if !hs.config.registration.open {
        return Err(MatrixError::forbidden("registration is disabled"));
    }
    let uia = Uia {
        flows: REGISTER_FLOWS,
        operation: "POST /register".into(),
        user: None,
    };
    // A finished session answers as it did the first time.
    if let Some(result) = uia_result(&hs, &uia, body.auth.as_ref()) {
        return Ok(Json(result));
    }
    let localpart = body
        .username
        .clone()
        .map(|u| u.to_lowercase())
        .unwrap_or_else(|| random_token(12).to_lowercase());
    let user_id = full_user_id(&hs, &localpart)?;
    if hs.store.user(&user_id)?.is_some() {
        return Err(MatrixError::user_in_use("that user name is taken"));
    }
    let session = user_interactive_auth(&hs, &uia, body.auth.as_ref()).await?;
    hs.limits.check(Action::Registration, "register")?;
    let hash = match body.password {
        Some(p) if !p.is_empty() => Some(
            password::hash(p)
                .await
                .map_err(MatrixError::unknown_internal)?,
        ),
        _ => None,
    };
    create_account(&hs, &user_id, hash.as_deref(), false).await?;
    let result = if body.inhibit_login {
        json!({ "user_id": user_id })
    } else {
        let (device_id, token) = new_session(
            &hs,
            &user_id,
            body.device_id,
            body.initial_device_display_name,
        )?;
        json!({ "user_id": user_id, "access_token": token, "device_id": device_id, "home_server": hs.server_name })
    };
    uia_store_result(&hs, &uia, &session, &result);
    Ok(Json(result))
}

async fn create_account(
    hs: &Homeserver,
    user_id: &str,
    hash: Option<&str>,
    admin: bool,
) -> ApiResult<()> {
    match hs.store.create_user(user_id, hash, admin, now_ms()) {
        Ok(()) => {}
        Err(conifer_store::StoreError::Conflict) => {
            return Err(MatrixError::user_in_use("that user name is taken"))
        }
        Err(e) => return Err(e.into()),
    }
    let localpart = user_id
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap_or("");
    hs.store.set_displayname(user_id, Some(localpart))?;
    Ok(())
}

fn new_session(
    hs: &Homeserver,
    user_id: &str,
    device_id: Option<String>,
    name: Option<String>,
) -> ApiResult<(String, String)> {
    let device_id = device_id
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| random_token(10).to_uppercase());
    let token = format!("cnf_{}", random_token(40));
    hs.store
        .create_device(user_id, &device_id, name.as_deref(), &token, now_ms())?;
    // A new device is a device-list change for everyone sharing a room,
    // even before it uploads keys.
    hs.device_list_changed(user_id, Some(&device_id), false)?;
    Ok((device_id, token))
}

#[derive(Deserialize)]
struct AvailableQuery {
    username: String,
}

async fn available(hs: Hs, Query(q): Query<AvailableQuery>) -> Resp {
    let user_id = full_user_id(&hs, &q.username)?;
    if hs.store.user(&user_id)?.is_some() {
        return Err(MatrixError::user_in_use("that user name is taken"));
    }
    Ok(Json(json!({ "available": true })))
}

async fn login_flows() -> Resp {
    Ok(Json(
        json!({ "flows": [{ "type": "m.login.password" }, { "type": "m.login.token" }] }),
    ))
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(rename = "type")]
    kind: String,
    identifier: Option<Value>,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
}

/// The user a login names, as a full user ID on this server.
fn login_user(
    hs: &Homeserver,
    identifier: Option<&Value>,
    user: Option<&str>,
) -> ApiResult<String> {
    let name = match identifier {
        Some(id) => {
            if id.get("type").and_then(Value::as_str) != Some("m.id.user") {
                return Err(MatrixError::unknown_internal(
                    "only m.id.user identifiers are supported",
                )
                .with_extra(json!({}))
                .into_code(axum::http::StatusCode::BAD_REQUEST, "M_UNKNOWN"));
            }
            id.get("user")
                .and_then(Value::as_str)
                .ok_or_else(|| MatrixError::missing_param("identifier.user"))?
        }
        None => user.ok_or_else(|| MatrixError::missing_param("identifier"))?,
    };
    if name.starts_with('@') {
        Ok(name.to_lowercase())
    } else {
        Ok(format!("@{}:{}", name.to_lowercase(), hs.server_name))
    }
}

async fn login(hs: Hs, Body(body): Body<LoginBody>) -> Resp {
    let user_id = match body.kind.as_str() {
        "m.login.password" => {
            let user_id = login_user(&hs, body.identifier.as_ref(), body.user.as_deref())?;
            hs.limits.check(Action::Login, &user_id)?;
            let password = body
                .password
                .ok_or_else(|| MatrixError::missing_param("password"))?;
            let user = hs.store.user(&user_id)?;
            let ok = match user.as_ref().and_then(|u| u.password_hash.clone()) {
                Some(h) => password::verify(password, h).await,
                None => false,
            };
            if !ok {
                return Err(MatrixError::forbidden("invalid user name or password"));
            }
            if user.is_some_and(|u| u.deactivated) {
                return Err(MatrixError::user_deactivated("this account is deactivated"));
            }
            user_id
        }
        "m.login.token" => {
            let token = body
                .token
                .ok_or_else(|| MatrixError::missing_param("token"))?;
            hs.store
                .take_login_token(&token, now_ms())?
                .ok_or_else(|| MatrixError::forbidden("invalid or expired login token"))?
        }
        other => {
            return Err(MatrixError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "M_UNKNOWN",
                format!("unsupported login type {other}"),
            ))
        }
    };
    let (device_id, token) = new_session(
        &hs,
        &user_id,
        body.device_id,
        body.initial_device_display_name,
    )?;
    Ok(Json(json!({
        "user_id": user_id, "access_token": token, "device_id": device_id, "home_server": hs.server_name,
        "well_known": { "m.homeserver": { "base_url": hs.config.client_base_url() } }
    })))
}

async fn get_login_token(hs: Hs, auth: Auth) -> Resp {
    let token = random_token(32);
    let lifetime = 120_000;
    hs.store
        .put_login_token(&token, &auth.user_id, now_ms() + lifetime)?;
    Ok(Json(
        json!({ "login_token": token, "expires_in_ms": lifetime }),
    ))
}

/// Deletes a device with its keys, tokens and pending messages, and tells
/// everyone sharing a room with the user, here and on other servers, that
/// it is gone. A device already gone is not an error.
fn remove_device(hs: &Homeserver, user: &str, device: &str) -> ApiResult<()> {
    match hs.store.delete_device(user, device) {
        Ok(_) => hs.device_list_changed(user, Some(device), true),
        Err(conifer_store::StoreError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn logout(hs: Hs, auth: Auth) -> Resp {
    remove_device(&hs, &auth.user_id, &auth.device_id)?;
    hs.store.delete_token(&auth.token)?;
    hs.forget_tokens(&auth.user_id);
    Ok(Json(json!({})))
}

async fn logout_all(hs: Hs, auth: Auth) -> Resp {
    for d in hs.store.devices(&auth.user_id)? {
        let _ = remove_device(&hs, &auth.user_id, &d.device_id);
    }
    hs.store.delete_tokens_except(&auth.user_id, None)?;
    hs.forget_tokens(&auth.user_id);
    Ok(Json(json!({})))
}

async fn whoami(auth: Auth) -> Resp {
    Ok(Json(
        json!({ "user_id": auth.user_id, "device_id": auth.device_id, "is_guest": false }),
    ))
}

/// User-interactive authentication before a sensitive `operation` of the
/// logged-in user: the password stage, or a dummy stage for an account that
/// has no password (its access token is then its only credential).
async fn reauthenticate(
    hs: &Homeserver,
    auth: &Auth,
    body: &Value,
    operation: &str,
) -> ApiResult<()> {
    const PASSWORD: &[&[&str]] = &[&["m.login.password"]];
    const DUMMY: &[&[&str]] = &[&["m.login.dummy"]];
    let has_password = hs
        .store
        .user(&auth.user_id)?
        .is_some_and(|u| u.password_hash.is_some());
    let uia = Uia {
        flows: if has_password { PASSWORD } else { DUMMY },
        operation: operation.to_owned(),
        user: Some(&auth.user_id),
    };
    user_interactive_auth(hs, &uia, body.get("auth")).await?;
    Ok(())
}

/// User-interactive auth for operations outside this module (uploading a
/// replacement cross-signing master key).
pub(crate) async fn require_password(hs: &Homeserver, auth: &Auth, body: &Value) -> ApiResult<()> {
    reauthenticate(hs, auth, body, "POST /keys/device_signing/upload").await
}

async fn change_password(hs: Hs, auth: Auth, Body(body): Body<Value>) -> Resp {
    reauthenticate(&hs, &auth, &body, "POST /account/password").await?;
    let new = body
        .get("new_password")
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::missing_param("new_password"))?;
    if new.is_empty() {
        return Err(MatrixError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "M_WEAK_PASSWORD",
            "the password is empty",
        ));
    }
    let hash = password::hash(new.to_owned())
        .await
        .map_err(MatrixError::unknown_internal)?;
    hs.store.set_password_hash(&auth.user_id, &hash)?;
    if body
        .get("logout_devices")
        .and_then(Value::as_bool)
        .unwrap_or(true)
    {
        for d in hs.store.devices(&auth.user_id)? {
            if d.device_id != auth.device_id {
                let _ = remove_device(&hs, &auth.user_id, &d.device_id);
            }
        }
        hs.store
            .delete_tokens_except(&auth.user_id, Some(&auth.device_id))?;
        hs.forget_tokens(&auth.user_id);
    }
    Ok(Json(json!({})))
}

async fn deactivate(hs: Hs, auth: Auth, Body(body): Body<Value>) -> Resp {
    reauthenticate(&hs, &auth, &body, "POST /account/deactivate").await?;
    if body.get("erase").and_then(Value::as_bool).unwrap_or(false) {
        hs.store.erase_user(&auth.user_id)?;
    }
    hs.store.deactivate_user(&auth.user_id)?;
    hs.forget_tokens(&auth.user_id);
    Ok(Json(json!({ "id_server_unbind_result": "no-support" })))
}

/// A device as `/devices` shows it. Unknown fields are sent as `null`
/// rather than left out: matrix-nio (whose schema follows Synapse's
/// answers) refuses a device without all four keys.
fn device_json(d: &conifer_store::DeviceRecord) -> Value {
    json!({ "device_id": d.device_id, "display_name": d.display_name, "last_seen_ts": d.last_seen_ts, "last_seen_ip": d.last_seen_ip })
}

async fn devices(hs: Hs, auth: Auth) -> Resp {
    let list: Vec<Value> = hs
        .store
        .devices(&auth.user_id)?
        .iter()
        .map(device_json)
        .collect();
    Ok(Json(json!({ "devices": list })))
}

async fn device(hs: Hs, auth: Auth, Path(device): Path<String>) -> Resp {
    let d = hs
        .store
        .device(&auth.user_id, &device)?
        .ok_or_else(|| MatrixError::not_found("no such device"))?;
    Ok(Json(device_json(&d)))
}

async fn update_device(
    hs: Hs,
    auth: Auth,
    Path(device): Path<String>,
    Body(body): Body<Value>,
) -> Resp {
    let name = body.get("display_name").and_then(Value::as_str);
    if !hs.store.set_device_name(&auth.user_id, &device, name)? {
        return Err(MatrixError::not_found("no such device"));
    }
    hs.device_list_changed(&auth.user_id, Some(&device), false)?;
    Ok(Json(json!({})))
}

async fn delete_device(
    hs: Hs,
    auth: Auth,
    Path(device): Path<String>,
    Body(body): Body<Value>,
) -> Resp {
    if hs.store.device(&auth.user_id, &device)?.is_none() {
        return Err(MatrixError::not_found("no such device"));
    }
    reauthenticate(&hs, &auth, &body, &format!("DELETE /devices/{device}")).await?;
    remove_device(&hs, &auth.user_id, &device)?;
    hs.forget_tokens(&auth.user_id);
    Ok(Json(json!({})))
}

async fn delete_devices(hs: Hs, auth: Auth, Body(body): Body<Value>) -> Resp {
    let ids: Vec<String> = body
        .get("devices")
        .and_then(Value::as_array)
        .ok_or_else(|| MatrixError::missing_param("devices"))?
        .iter()
        .filter_map(|d| d.as_str().map(str::to_owned))
        .collect();
    reauthenticate(&hs, &auth, &body, "POST /delete_devices").await?;
    for d in ids {
        let _ = remove_device(&hs, &auth.user_id, &d);
    }
    hs.forget_tokens(&auth.user_id);
    Ok(Json(json!({})))
}

/// Nonces handed out by `GET /_synapse/admin/v1/register`, valid for a minute.
fn nonces() -> &'static Mutex<HashMap<String, Instant>> {
    static NONCES: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    NONCES.get_or_init(Default::default)
}

async fn admin_nonce(hs: Hs) -> Resp {
    if hs.config.registration.shared_secret.is_none() {
        return Err(
            MatrixError::bad_json("shared secret registration is not enabled")
                .into_code(axum::http::StatusCode::BAD_REQUEST, "M_UNKNOWN"),
        );
    }
    let nonce = random_token(32);
    let mut n = nonces().lock();
    n.retain(|_, t| t.elapsed() < Duration::from_secs(60));
    n.insert(nonce.clone(), Instant::now());
    Ok(Json(json!({ "nonce": nonce })))
}

#[derive(Deserialize)]
struct AdminRegister {
    nonce: String,
    username: String,
    password: String,
    #[serde(default)]
    admin: bool,
    mac: String,
    displayname: Option<String>,
}

async fn admin_register(hs: Hs, Body(body): Body<AdminRegister>) -> Resp {
    let Some(secret) = hs.config.registration.shared_secret.clone() else {
        return Err(
            MatrixError::bad_json("shared secret registration is not enabled")
                .into_code(axum::http::StatusCode::BAD_REQUEST, "M_UNKNOWN"),
        );
    };
    if nonces()
        .lock()
        .remove(&body.nonce)
        .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
    {
        return Err(MatrixError::forbidden("unrecognised nonce"));
    }
    // HMAC-SHA1 over nonce, user, password and admin flag, NUL-separated (Synapse's scheme).
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body.nonce.as_bytes());
    mac.update(b"\0");
    mac.update(body.username.as_bytes());
    mac.update(b"\0");
    mac.update(body.password.as_bytes());
    mac.update(b"\0");
    mac.update(if body.admin { b"admin" } else { b"notadmin" });
    let given = hex::decode(&body.mac).map_err(|_| MatrixError::forbidden("HMAC incorrect"))?;
    mac.verify_slice(&given)
        .map_err(|_| MatrixError::forbidden("HMAC incorrect"))?;
    let user_id = full_user_id(&hs, &body.username.to_lowercase())?;
    let hash = password::hash(body.password)
        .await
        .map_err(MatrixError::unknown_internal)?;
    create_account(&hs, &user_id, Some(&hash), body.admin).await?;
    if let Some(name) = body.displayname {
        hs.store.set_displayname(&user_id, Some(&name))?;
    }
    let (device_id, token) = new_session(&hs, &user_id, None, None)?;
    Ok(Json(
        json!({ "user_id": user_id, "access_token": token, "device_id": device_id, "home_server": hs.server_name }),
    ))
}
