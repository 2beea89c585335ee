//! Helpers for tests that run the real `vocalized` binary as a child process.
//!
//! Every child is killed when its handle drops, so a failing assertion never leaves a
//! server behind, and every wait has a deadline, so a hung child fails the test instead
//! of hanging the suite.

#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Long enough for a debug build to open SQLite and run migrations on a busy 2-core box.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `vocalized` with a clean `VOCALIZED_*` environment, run inside `dir` so the default
/// `./data` never lands in the repository.
pub fn vocalized(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vocalized"));
    for (name, _) in std::env::vars() {
        if name.starts_with("VOCALIZED_") {
            command.env_remove(name);
        }
    }
    command
        .env("RUST_LOG", "info")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The stderr lines that are not empty.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Runs a command that is expected to finish by itself.
pub fn finish(mut command: Command) -> Finished {
    let mut process = Process::spawn(&mut command);
    let status = process.wait(START_TIMEOUT);
    Finished {
        status,
        stdout: process.stdout_so_far(),
        stderr: process.stderr_so_far(),
    }
}

/// A running child, killed on drop.
pub struct Process {
    child: Child,
    stdout_lines: Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Process {
    pub fn spawn(command: &mut Command) -> Self {
        let mut child = command.spawn().expect("spawn vocalized");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (line_tx, stdout_lines) = channel();
        let out = child.stdout.take().expect("piped stdout");
        let copy = stdout.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                copy.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = line_tx.send(line);
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let copy = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                copy.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child,
            stdout_lines,
            stdout,
            stderr,
        }
    }

    /// Waits for the `... listening on http://ADDR ...` line and returns ADDR.
    pub fn wait_listening(&mut self) -> SocketAddr {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        return addr
                            .parse()
                            .unwrap_or_else(|_| panic!("bad address in {line:?}"));
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no listening line within {START_TIMEOUT:?}; stderr: {}",
                    self.stderr_so_far()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait(Duration::from_secs(5));
                    panic!(
                        "exited ({status}) before listening; stderr: {}",
                        self.stderr_so_far()
                    )
                }
            }
        }
    }

    /// Sends SIGTERM, as an orchestrator would, and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        self.wait(Duration::from_secs(30))
    }

    /// Waits for the child to exit, killing it and failing the test after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads catch the last output.
                thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "still running after {timeout:?}; stderr: {}",
                    self.stderr_so_far()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stdout_so_far(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    (status, body.to_owned())
}

/// A port nothing listens on right now.
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The stdout line that starts with `prefix`, waiting for it (the demo lines follow the
/// listening line).
pub fn line_starting(server: &Process, prefix: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(line) = server
            .stdout_so_far()
            .lines()
            .find(|l| l.starts_with(prefix))
        {
            return line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {prefix:?} line: {}",
            server.stdout_so_far()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
