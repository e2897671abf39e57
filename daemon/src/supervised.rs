//! Background work that is not a job — the start-up restore, an app's
//! background fetch, the update scheduler — run in tasks whose panics are
//! logged with the work's name instead of vanishing with the task (a job's
//! panic ends the job instead: `jobs::run_to_end`).

use std::future::Future;

use tokio::task::JoinHandle;

/// Runs `future` in its own task; if it panics, logs the panic as an error
/// naming `name`. The handle gives the future's output, or `None` if it
/// panicked (or was cancelled by the runtime shutting down).
pub fn spawn_logged<F>(name: impl Into<String>, future: F) -> JoinHandle<Option<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_logged_then(name, future, |_| {})
}

/// [`spawn_logged`], and `on_panic` runs with the panic's message once it
/// is logged (to show the failure where a user looks).
pub fn spawn_logged_then<F, P>(
    name: impl Into<String>,
    future: F,
    on_panic: P,
) -> JoinHandle<Option<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    P: FnOnce(&str) + Send + 'static,
{
    let name = name.into();
    let task = tokio::spawn(future);
    tokio::spawn(async move {
        match task.await {
            Ok(output) => Some(output),
            Err(e) if e.is_panic() => {
                let message = crate::jobs::panic_text(e.into_panic().as_ref());
                tracing::error!(task = %name, "{name} panicked: {message}");
                on_panic(&message);
                None
            }
            Err(_) => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Log lines written while the test runs (current-thread runtime, so
    /// every task logs through the thread's subscriber).
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_panic_is_logged_with_its_name_and_reported_a_normal_end_is_not() {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let record = seen.clone();
        let handle = spawn_logged_then(
            "background fetch of org.test.Hello",
            async { panic!("block went missing") },
            move |message: &str| record.lock().unwrap().push(message.to_string()),
        );
        let output: Option<()> = handle.await.unwrap();
        assert_eq!(output, None);
        assert_eq!(*seen.lock().unwrap(), ["block went missing"]);
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("ERROR")
                && text.contains("background fetch of org.test.Hello panicked: block went missing"),
            "{text}"
        );

        // A future that ends normally gives its output; nothing is logged.
        let before = logs.0.lock().unwrap().len();
        let record = seen.clone();
        let handle = spawn_logged_then("restore", async { 7 }, move |m: &str| {
            record.lock().unwrap().push(m.to_string())
        });
        assert_eq!(handle.await.unwrap(), Some(7));
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert_eq!(logs.0.lock().unwrap().len(), before);
        assert_eq!(
            spawn_logged("scheduler", async { "done" }).await.unwrap(),
            Some("done")
        );
    }
}
