//! NATS servers with JetStream on loopback ports, started and stopped by tests (and by nothing
//! else): one server, or a three-node cluster. Never any other address.
//!
//! The server binary is `$BOOKSTORE_NATS_SERVER`, else `nats-server` on the `PATH`;
//! [`server_binary`] says which, or that there is none (tests then skip with a message).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The `nats-server` to run, if there is one.
pub fn server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BOOKSTORE_NATS_SERVER") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("nats-server"))
        .find(|p| p.is_file())
}

/// `count` free loopback ports for a cluster's servers, all different, and none this process
/// handed out before: each is bound and released, but only once all are bound (a port bound and
/// released at once was handed out again by the next bind: one CI run gave a server the same
/// port for its clients and its routes, and the cluster never formed), and those already given
/// to another cluster (tests in one binary start theirs at the same time) are passed over.
/// Another process may still take one before its server binds it: good enough for tests.
fn free_ports(count: usize) -> Vec<u16> {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (mut ports, mut held) = (Vec::new(), Vec::new());
    while ports.len() < count {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = listener.local_addr().expect("a bound port").port();
        if handed_out.insert(port) {
            ports.push(port);
        }
        held.push(listener);
    }
    ports
}

/// One `nats-server` process of a [`LocalCluster`].
pub struct Node {
    pub client_port: u16,
    store: PathBuf,
    process: Option<Child>,
    args: Vec<String>,
    binary: PathBuf,
}

impl Node {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.store.with_extension("log")).expect("a log file");
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.process = Some(child);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, with its store as it was.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "the node still runs");
        self.start();
    }
}

/// Servers with JetStream on loopback, their stores in a directory of their own; all killed
/// and removed when dropped.
pub struct LocalCluster {
    pub nodes: Vec<Node>,
    dir: PathBuf,
}

impl LocalCluster {
    /// `n` servers (1, or 3 for a cluster), ready to take JetStream requests.
    pub fn start(binary: &Path, n: usize, tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("bookstore-nats-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for the servers");
        let free = free_ports(2 * n);
        let ports: Vec<(u16, u16)> = free.chunks(2).map(|pair| (pair[0], pair[1])).collect();
        let routes = ports
            .iter()
            .map(|(_, cluster)| format!("nats://127.0.0.1:{cluster}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<Node> = ports
            .iter()
            .enumerate()
            .map(|(i, &(client_port, cluster_port))| {
                let store = dir.join(format!("n{i}"));
                let mut args = vec![
                    "-a".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    client_port.to_string(),
                    "-js".into(),
                    "-sd".into(),
                    store.display().to_string(),
                    "-n".into(),
                    format!("n{i}"),
                ];
                if n > 1 {
                    args.extend([
                        "--cluster_name".into(),
                        format!("bookstore-{tag}"),
                        "--cluster".into(),
                        format!("nats://127.0.0.1:{cluster_port}"),
                        "--routes".into(),
                        routes.clone(),
                    ]);
                }
                Node {
                    client_port,
                    store,
                    process: None,
                    args,
                    binary: binary.to_owned(),
                }
            })
            .collect();
        for node in &mut nodes {
            node.start();
        }
        let cluster = Self { nodes, dir };
        cluster.wait_for_jetstream(Duration::from_secs(60));
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// Waits until a stream can be created with as many replicas as nodes (the cluster has a
    /// JetStream leader), by creating and deleting a probe stream.
    fn wait_for_jetstream(&self, limit: Duration) {
        let started = Instant::now();
        let config = crate::StreamConfig {
            servers: self.urls(),
            stream: "probe".into(),
            replicas: self.nodes.len(),
            capacity: 0,
        };
        loop {
            match crate::reading::probe(&config, Duration::from_secs(2)) {
                Ok(()) => return,
                Err(error) if started.elapsed() > limit => {
                    let logs: Vec<String> = self
                        .nodes
                        .iter()
                        .map(|n| {
                            let log = std::fs::read_to_string(n.store.with_extension("log"))
                                .unwrap_or_default();
                            let tail: Vec<&str> = log.lines().rev().take(15).collect();
                            format!(
                                "{}:\n{}",
                                n.url(),
                                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                            )
                        })
                        .collect();
                    panic!(
                        "the NATS servers did not come up: {error}\n{}",
                        logs.join("\n")
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
