//! Real receivers for what services send out: a Slack incoming-webhook stand-in (an HTTP server)
//! and an SMTP server (`aiosmtpd`), with what each received.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{free_port, venv_bin};

/// A Slack incoming-webhook stand-in: a real HTTP server keeping the `text` of each POST.
pub struct SlackReceiver {
    address: std::net::SocketAddr,
    received: Arc<Mutex<Vec<String>>>,
}

impl SlackReceiver {
    pub async fn start() -> SlackReceiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&received);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let kept = Arc::clone(&kept);
                async move {
                    kept.lock().unwrap().push(body["text"].as_str().unwrap_or_default().to_owned());
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        SlackReceiver { address, received }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    pub fn messages(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

/// A real SMTP server (`python -m aiosmtpd`, from the test command's virtualenv) storing each
/// message in a Maildir.
pub struct SmtpServer {
    child: Option<Child>,
    port: u16,
    maildir: PathBuf,
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        let maildir = std::env::temp_dir().join(format!("ct-smtp-{}", uuid_like()));
        let mut server = SmtpServer { child: None, port: free_port(), maildir };
        server.restart();
        server
    }

    /// Starts the server (again) on the same port and Maildir.
    pub fn restart(&mut self) {
        let child = Command::new(venv_bin("python"))
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{}", self.port)])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd (deploy/bootstrap.sh installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("aiosmtpd did not listen on port {} within 10 s", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, as text.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.maildir.join(sub)).ok())
            .flatten()
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        files.sort();
        // Bodies may be quoted-printable: undo its soft line breaks.
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .map(|m| m.replace("=\r\n", "").replace("=\n", ""))
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

fn uuid_like() -> String {
    format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple())
}
