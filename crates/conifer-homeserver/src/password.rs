//! Password hashing with Argon2id (PHC strings in the database).
//!
//! Argon2 is deliberately slow and memory-hard (19 MiB per hash with the
//! default parameters), so all hashing runs on one dedicated thread: the
//! async workers never block, and the memory is reused instead of being
//! held by every thread of a blocking pool (which took a node from 11 MiB
//! idle to 190 MiB after ten registrations).

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use parking_lot::Mutex;
use std::sync::mpsc;
use std::sync::OnceLock;

type Job = Box<dyn FnOnce() + Send>;

fn hasher() -> &'static Mutex<mpsc::Sender<Job>> {
    static HASHER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    HASHER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("conifer-password-hasher".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .expect("cannot start the password hashing thread");
        Mutex::new(tx)
    })
}

async fn on_hasher<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    hasher().lock().send(job).ok()?;
    rx.await.ok()
}

pub async fn hash(password: String) -> Result<String, String> {
    on_hasher(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|| Err("the password hashing thread has stopped".into()))
}

pub async fn verify(password: String, stored: String) -> bool {
    on_hasher(move || {
        PasswordHash::new(&stored).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}
