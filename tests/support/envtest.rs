//! A throwaway control plane (etcd + kube-apiserver from `$KUBEBUILDER_ASSETS`), or an existing
//! disposable cluster (`$KUBEPIM_E2E_KUBECONFIG`), with one client per test user and the
//! in-process operator.
//!
//! Design:
//! - `Env::isolated` starts a control plane for one test. The lifecycle tests use it: each runs its
//!   own operator, which sees every request in the cluster (all three kinds are cluster-scoped),
//!   and one test stops and restarts it, so two tests must never share a cluster.
//! - `Env::shared` starts one control plane per test binary (the first test to ask starts it).
//!   The CRD tests use it: they run no operator and use unique names.
//! - Both install the CRDs and the test RBAC before handing out the `Env`.
//! - Identities: a static token file with the users in [`USERS`]. `admin` is in `system:masters`;
//!   `operator` is not, and has only the RBAC in [`operator_cluster_role`].
//! - Clean-up: the processes are killed and the temp dir removed when the last `Env` using the
//!   control plane is dropped, also on panic. A per-binary control plane lives in a static that is
//!   never dropped, so every control plane also has a watchdog (`sh`) that reads a pipe from this
//!   process: when the test process exits, however it exits, the pipe closes and the watchdog
//!   kills etcd and kube-apiserver and removes the directory.
//! - `KUBEPIM_E2E_KEEP=1` keeps the directory (logs, kubeconfigs) and prints where it is.
//! - With `KUBEPIM_E2E_KUBECONFIG` (admin kubeconfig of a disposable cluster without kubepim
//!   running in it) users are impersonated, and the tests that want an isolated cluster are
//!   serialised within the binary instead. Objects are labelled `kubepim-e2e/test=<id>` and
//!   deleted best-effort when the test ends.
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};
use kubepim::api::{ActivationRequest, Eligibility, PrivilegedRole, Requester};
use kubepim::runtime::OperatorSettings;
use serde_json::json;
use tokio::sync::OnceCell;

pub const ASSETS_ENV: &str = "KUBEBUILDER_ASSETS";
pub const KUBECONFIG_ENV: &str = "KUBEPIM_E2E_KUBECONFIG";
pub const KEEP_ENV: &str = "KUBEPIM_E2E_KEEP";
const SKIP_LINE: &str = "SKIPPED: set KUBEBUILDER_ASSETS to a directory with etcd and kube-apiserver \
     to run the end-to-end tests (or KUBEPIM_E2E_KUBECONFIG to a disposable cluster's admin kubeconfig)";

/// Label on every object a test creates (used for clean-up on an external cluster).
pub const TEST_LABEL: &str = "kubepim-e2e/test";
/// Field manager of the harness's own server-side applies.
const MANAGER: &str = "kubepim-e2e";

/// A user of the test cluster.
pub struct User {
    pub name: &'static str,
    pub groups: &'static [&'static str],
}

/// The users in the token file (and the identities impersonated on an external cluster).
pub const USERS: &[User] = &[
    User {
        name: "admin",
        groups: &["system:masters"],
    },
    User {
        name: "operator",
        groups: &["kubepim-e2e:operators"],
    },
    User {
        name: "alice",
        groups: &["payments-oncall", "developers"],
    },
    User {
        name: "bob",
        groups: &["sre-leads"],
    },
    User {
        name: "carol",
        groups: &["sre-leads", "payments-oncall"],
    },
    User {
        name: "mallory",
        groups: &["developers"],
    },
];

/// Ordinary users: may create requests and approve through `/status` (the admission policies that
/// restrict what they may write there come in a later issue).
pub const PEOPLE: &[&str] = &["alice", "bob", "carol", "mallory"];

/// ClusterRoles the test PrivilegedRoles reference. The operator gets `bind` on exactly these.
pub const POD_READER: &str = "kubepim-e2e-pod-reader";
pub const NAMESPACE_READER: &str = "kubepim-e2e-namespace-reader";
/// Pods and RoleBindings in a namespace: enough for a grant holder to bind herself again (RBAC
/// lets anyone bind a role whose permissions they hold there).
pub const NAMESPACE_ADMIN: &str = "kubepim-e2e-namespace-admin";
/// Name of the namespaced Role tests create in their namespaces (see `fixtures::secret_reader_role`).
pub const SECRET_READER: &str = "kubepim-e2e-secret-reader";

fn user(name: &str) -> &'static User {
    USERS
        .iter()
        .find(|u| u.name == name)
        .unwrap_or_else(|| panic!("no test user {name:?}"))
}

/// The groups the API server reports for a user (what an admission webhook would stamp).
pub fn groups_of(name: &str) -> Vec<String> {
    let mut groups: Vec<String> = user(name).groups.iter().map(|g| g.to_string()).collect();
    groups.push("system:authenticated".into());
    groups
}

/// Writes one line to the real stderr, bypassing libtest's capture, so it shows for passing tests.
fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

// ------------------------------------------------------------------------------------------------
// The control plane
// ------------------------------------------------------------------------------------------------

/// How a control plane differs from the default (loopback, no pods).
#[derive(Clone, Debug, Default)]
pub struct ControlPlaneOptions {
    /// The address kube-apiserver listens on and is reached at (also in its serving certificate).
    /// `None`: 127.0.0.1. Pods on a node reach the API server on a host address, not loopback.
    pub address: Option<IpAddr>,
    /// Run pods as a cluster does: the ServiceAccount admission plugin on (token volumes),
    /// NodeRestriction, authorization `Node,RBAC` (kubelets as `system:node:<name>`), and
    /// `--enable-aggregator-routing` (webhook Services reached at their endpoints: no kube-proxy).
    pub nodes: bool,
    /// More token users: name and groups (e.g. a kubelet's `system:node:<name>`).
    pub extra_users: Vec<(String, Vec<String>)>,
    /// Start kube-apiserver with its audit webhook backend posting to this endpoint.
    pub audit_webhook: Option<AuditWebhook>,
}

/// kube-apiserver's audit webhook: where it posts (e.g. the in-process operator's
/// `https://127.0.0.1:<port>/audit`, served with [`ControlPlane::serving_cert_files`], which the
/// webhook's kubeconfig trusts through the control plane's CA), the bearer token it presents
/// (client-go sends it over HTTPS only), and the audit policy (YAML).
#[derive(Clone, Debug)]
pub struct AuditWebhook {
    pub url: String,
    pub token: String,
    pub policy: String,
}

/// etcd + kube-apiserver on loopback, with their own PKI and token file.
pub struct ControlPlane {
    pub url: String,
    /// The address and port kube-apiserver listens on.
    pub address: IpAddr,
    pub port: u16,
    ca_der: Vec<u8>,
    tokens: BTreeMap<String, String>,
    pub dir: PathBuf,
    keep: bool,
    /// The processes; behind locks so that a test holding a shared `Env` can restart them.
    etcd: Mutex<Child>,
    apiserver: Mutex<Child>,
    etcd_spawn: Spawn,
    apiserver_spawn: Spawn,
    /// Where kube-apiserver listens (what a fault-injecting proxy forwards to).
    pub api_addr: std::net::SocketAddr,
    etcd_addr: std::net::SocketAddr,
    watchdog: Option<(Child, ChildStdin)>,
    /// Wall time from spawning etcd to `/readyz` answering ok.
    pub startup: Duration,
}

struct Pki {
    ca_pem: String,
    ca_der: Vec<u8>,
    serving_cert_pem: String,
    serving_key_pem: String,
    sa_key_pem: String,
    sa_pub_pem: String,
}

fn pki(address: IpAddr) -> Result<Pki> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "kubepim-e2e-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let serving_key = KeyPair::generate()?;
    let mut names = vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes.default.svc".to_string(),
    ];
    if !address.is_loopback() {
        names.push(address.to_string());
    }
    let mut serving = CertificateParams::new(names)?;
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving.signed_by(&serving_key, &issuer)?;

    // ECDSA P-256: the API server signs service-account tokens with ES256.
    let sa = KeyPair::generate()?;
    Ok(Pki {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().to_vec(),
        serving_cert_pem: serving_cert.pem(),
        serving_key_pem: serving_key.serialize_pem(),
        sa_key_pem: sa.serialize_pem(),
        sa_pub_pem: sa.public_key_pem(),
    })
}

fn random_hex(bytes: usize) -> String {
    use std::io::Read as _;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A free loopback port (released again, so there is a small race; `start` retries).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Kills etcd and kube-apiserver when this process goes away without dropping the control plane.
/// Their pids are read from `$DIR/pids` at that moment: a restart writes the new ones there.
const WATCHDOG: &str = r#"cat >/dev/null
pids=$(cat "$DIR/pids" 2>/dev/null)
kill $pids 2>/dev/null
sleep 1
kill -9 $pids 2>/dev/null
[ -n "$KEEP" ] || rm -rf "$DIR""#;

/// How to start etcd or kube-apiserver (again): binary, arguments, log (appended to).
struct Spawn {
    what: &'static str,
    bin: PathBuf,
    args: Vec<String>,
    log: PathBuf,
}

impl Spawn {
    fn new(what: &'static str, bin: PathBuf, log: PathBuf) -> Self {
        Self {
            what,
            bin,
            args: Vec::new(),
            log,
        }
    }

    fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    fn spawn(&self) -> Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        Command::new(&self.bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.what))
    }
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver from `assets` and waits for `/readyz`.
    pub async fn start(assets: &Path) -> Result<Self> {
        Self::start_with(assets, &ControlPlaneOptions::default()).await
    }

    /// Like [`ControlPlane::start`], with `options`.
    pub async fn start_with(assets: &Path, options: &ControlPlaneOptions) -> Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(assets, options).await {
                Ok(cp) => return Ok(cp),
                // Most likely a port taken between picking and binding it: try other ports.
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts"))
    }

    async fn start_once(assets: &Path, options: &ControlPlaneOptions) -> Result<Self> {
        let address = options.address.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let etcd_bin = assets.join("etcd");
        let apiserver_bin = assets.join("kube-apiserver");
        for bin in [&etcd_bin, &apiserver_bin] {
            if !bin.is_file() {
                bail!("{} not found (is {ASSETS_ENV} right?)", bin.display());
            }
        }
        // tmpfs when there is one: etcd fsyncs every write, and that dominates on a disk.
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("kubepim-e2e-")
            .tempdir_in(&base)?
            .keep();
        let keep = std::env::var_os(KEEP_ENV).is_some_and(|v| !v.is_empty() && v != "0");

        let pki = pki(address)?;
        let write = |name: &str, data: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, data).with_context(|| format!("writing {}", p.display()))?;
            Ok(p)
        };
        let ca_file = write("ca.crt", &pki.ca_pem)?;
        let cert_file = write("apiserver.crt", &pki.serving_cert_pem)?;
        let key_file = write("apiserver.key", &pki.serving_key_pem)?;
        let sa_key = write("sa.key", &pki.sa_key_pem)?;
        let sa_pub = write("sa.pub", &pki.sa_pub_pem)?;
        let mut tokens = BTreeMap::new();
        let mut token_csv = String::new();
        let users = USERS
            .iter()
            .map(|u| {
                let groups = u.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>();
                (u.name.to_string(), groups)
            })
            .chain(options.extra_users.iter().cloned());
        for (name, groups) in users {
            let token = random_hex(24);
            token_csv.push_str(&format!(
                "{token},{name},uid-{name},\"{}\"\n",
                groups.join(",")
            ));
            tokens.insert(name, token);
        }
        let token_file = write("tokens.csv", &token_csv)?;

        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let url = match address {
            IpAddr::V6(a) => format!("https://[{a}]:{api_port}"),
            IpAddr::V4(a) => format!("https://{a}:{api_port}"),
        };
        let address_arg = address.to_string();
        // The default: no pods (no token volumes to add, no kubelets to authorize).
        let mut pod_args = vec!["--disable-admission-plugins", "ServiceAccount"];
        if options.nodes {
            pod_args = vec![
                "--enable-admission-plugins",
                "NodeRestriction",
                "--enable-aggregator-routing=true",
            ];
        }
        let authorization = if options.nodes { "Node,RBAC" } else { "RBAC" };
        let mut audit_args: Vec<String> = Vec::new();
        if let Some(audit) = &options.audit_webhook {
            let kubeconfig = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: kubepim\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
                 users:\n- name: apiserver\n  user:\n    token: {}\ncontexts:\n- name: audit\n  context:\n    \
                 cluster: kubepim\n    user: apiserver\ncurrent-context: audit\n",
                audit.url,
                ca_file.display(),
                audit.token
            );
            let config = write("audit-webhook.kubeconfig", &kubeconfig)?;
            let policy = write("audit-policy.yaml", &audit.policy)?;
            audit_args = vec![
                format!("--audit-webhook-config-file={}", config.display()),
                format!("--audit-policy-file={}", policy.display()),
                "--audit-webhook-batch-max-wait=1s".into(),
                // The operator starts after the API server: do not back off for long meanwhile.
                "--audit-webhook-initial-backoff=200ms".into(),
            ];
        }
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let started = Instant::now();
        let etcd_log = dir.join("etcd.log");
        let data_dir = dir.join("etcd");
        let etcd_spawn = Spawn::new("etcd", etcd_bin, etcd_log.clone())
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args([
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .args(["--logger", "zap", "--log-level", "warn"]);
        let etcd = etcd_spawn.spawn()?;
        let apiserver_log = dir.join("kube-apiserver.log");
        let cert_dir = dir.join("certs");
        let apiserver_spawn = Spawn::new("kube-apiserver", apiserver_bin, apiserver_log.clone())
            .args(["--etcd-servers", &etcd_url])
            .args([
                "--bind-address",
                &address_arg,
                "--advertise-address",
                &address_arg,
            ])
            .args(["--secure-port", &api_port.to_string()])
            .args(["--cert-dir", cert_dir.to_str().unwrap()])
            .args(["--tls-cert-file", cert_file.to_str().unwrap()])
            .args(["--tls-private-key-file", key_file.to_str().unwrap()])
            .args(["--client-ca-file", ca_file.to_str().unwrap()])
            .args(["--token-auth-file", token_file.to_str().unwrap()])
            .args(["--authorization-mode", authorization])
            .args(["--service-account-issuer", "https://kubernetes.default.svc"])
            .args(["--service-account-key-file", sa_pub.to_str().unwrap()])
            .args([
                "--service-account-signing-key-file",
                sa_key.to_str().unwrap(),
            ])
            .args(["--service-cluster-ip-range", "10.0.0.0/24"])
            .args(&pod_args)
            .args(&audit_args)
            .args(["--endpoint-reconciler-type", "none"])
            .args(["--profiling=false"]);
        let apiserver = apiserver_spawn.spawn()?;
        std::fs::write(
            dir.join("pids"),
            format!("{} {}", etcd.id(), apiserver.id()),
        )?;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("kubepim-e2e-watchdog")
            .env("DIR", &dir)
            .env("KEEP", if keep { "1" } else { "" })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(|mut c| {
                let stdin = c.stdin.take().expect("piped stdin");
                (c, stdin)
            })
            .ok();

        let mut cp = ControlPlane {
            url,
            address,
            port: api_port,
            ca_der: pki.ca_der,
            tokens,
            dir: dir.clone(),
            keep,
            etcd: Mutex::new(etcd),
            apiserver: Mutex::new(apiserver),
            etcd_spawn,
            apiserver_spawn,
            api_addr: (address, api_port).into(),
            etcd_addr: ([127, 0, 0, 1], etcd_port).into(),
            watchdog,
            startup: Duration::ZERO,
        };
        cp.write_kubeconfigs(&ca_file)?;

        cp.wait_ready(started + Duration::from_secs(90)).await?;
        cp.startup = started.elapsed();
        Ok(cp)
    }

    /// Waits for `/readyz` to answer ok (etcd included); fails if a process exits meanwhile.
    async fn wait_ready(&self, deadline: Instant) -> Result<()> {
        let admin = Client::try_from(self.config("admin"))?;
        let etcd_log = self.etcd_spawn.log.clone();
        let apiserver_log = self.apiserver_spawn.log.clone();
        loop {
            if let Some(status) = self.etcd.lock().unwrap().try_wait()? {
                bail!(
                    "etcd exited ({status}) before it was ready:\n{}",
                    tail(&etcd_log, 20)
                );
            }
            if let Some(status) = self.apiserver.lock().unwrap().try_wait()? {
                bail!(
                    "kube-apiserver exited ({status}) before it was ready:\n{}",
                    tail(&apiserver_log, 30)
                );
            }
            // Not before the port is open: the client logs every refused connection as an error.
            if std::net::TcpStream::connect(self.api_addr).is_err() {
                if Instant::now() > deadline {
                    bail!(
                        "kube-apiserver not listening in time:\n{}",
                        tail(&apiserver_log, 30)
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let req = http::Request::get("/readyz").body(Vec::new())?;
            match admin.request_text(req).await {
                Ok(body) if body.trim() == "ok" => break,
                _ if Instant::now() > deadline => {
                    bail!(
                        "kube-apiserver not ready in time:\n{}",
                        tail(&apiserver_log, 30)
                    )
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        Ok(())
    }

    /// Kills kube-apiserver (SIGKILL: a crash, every connection reset), leaves it down for
    /// `down`, starts it again on the same port and waits until it is ready. Returns how long
    /// the API was unreachable.
    pub async fn restart_apiserver(&self, down: Duration) -> Result<Duration> {
        self.restart(&self.apiserver, &self.apiserver_spawn, down)
            .await
    }

    /// Kills etcd (SIGKILL), leaves it down for `down`, starts it again on its data and waits
    /// until kube-apiserver is ready again. Returns how long storage was unreachable.
    pub async fn restart_etcd(&self, down: Duration) -> Result<Duration> {
        self.restart(&self.etcd, &self.etcd_spawn, down).await
    }

    /// Whether etcd answers its health check (kube-apiserver's `/readyz` can still say ok for a
    /// moment after etcd went away, so it does not tell that etcd is back).
    fn etcd_healthy(&self) -> bool {
        use std::io::Read as _;
        let Ok(mut stream) =
            std::net::TcpStream::connect_timeout(&self.etcd_addr, Duration::from_millis(500))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = String::new();
        stream
            .write_all(b"GET /health HTTP/1.0\r\n\r\n")
            .and_then(|_| stream.read_to_string(&mut answer))
            .is_ok()
            && answer.contains(r#""health":"true""#)
    }

    async fn restart(
        &self,
        child: &Mutex<Child>,
        spawn: &Spawn,
        down: Duration,
    ) -> Result<Duration> {
        let killed = Instant::now();
        {
            let mut child = child.lock().unwrap();
            let _ = child.kill();
            let _ = child.wait();
        }
        tokio::time::sleep(down).await;
        let fresh = spawn.spawn()?;
        *child.lock().unwrap() = fresh;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.etcd_healthy() {
            if Instant::now() > deadline {
                bail!("etcd not healthy 60s after {} restarted", spawn.what);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pids = format!(
            "{} {}",
            self.etcd.lock().unwrap().id(),
            self.apiserver.lock().unwrap().id()
        );
        std::fs::write(self.dir.join("pids"), pids)?;
        self.wait_ready(Instant::now() + Duration::from_secs(90))
            .await
            .with_context(|| format!("{} after a restart", spawn.what))?;
        Ok(killed.elapsed())
    }

    fn write_kubeconfigs(&self, ca_file: &Path) -> Result<()> {
        for u in self.tokens.keys() {
            let yaml = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    server: {}\n    \
                 certificate-authority: {}\nusers:\n- name: {u}\n  user:\n    token: {}\ncontexts:\n- name: {u}\n  \
                 context:\n    cluster: envtest\n    user: {u}\ncurrent-context: {u}\n",
                self.url,
                ca_file.display(),
                self.tokens[u],
            );
            std::fs::write(self.kubeconfig(u), yaml)?;
        }
        Ok(())
    }

    /// The CA of the API server's serving certificate (what `kube-root-ca.crt` should carry).
    /// The API server's serving certificate and key (PEM files; valid for 127.0.0.1 and
    /// localhost, signed by [`ControlPlane::ca_file`]'s CA): what a test listener on loopback
    /// that the API server calls (the audit webhook) can serve.
    pub fn serving_cert_files(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.join("apiserver.crt"),
            self.dir.join("apiserver.key"),
        )
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The key the API server signs ServiceAccount tokens with (kube-controller-manager's
    /// `--service-account-private-key-file`).
    pub fn service_account_key_file(&self) -> PathBuf {
        self.dir.join("sa.key")
    }

    /// Path of a kubeconfig for `user` (`kubectl --kubeconfig …`).
    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        self.dir.join(format!("kubeconfig-{user}.yaml"))
    }

    /// A client configuration for `user`: cluster URL, our CA, the user's bearer token.
    pub fn config(&self, user: &str) -> Config {
        let mut config = Config::new(self.url.parse().expect("cluster url"));
        config.root_cert = Some(vec![self.ca_der.clone()]);
        // `AuthInfo.token` is a `secrecy::SecretString`; going through serde saves a dependency.
        config.auth_info =
            serde_json::from_value(json!({ "token": self.tokens[user] })).expect("auth info");
        config
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The watchdog first, so that it can never signal a recycled pid after ours are reaped.
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
            drop(stdin);
        }
        for child in [&mut self.apiserver, &mut self.etcd] {
            let child = child.get_mut().unwrap_or_else(|e| e.into_inner());
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.keep || std::thread::panicking() && std::env::var_os(KEEP_ENV).is_some() {
            say(&format!(
                "kubepim-e2e: kept control-plane directory {}",
                self.dir.display()
            ));
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Cluster set-up shared by both backends
// ------------------------------------------------------------------------------------------------

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// The operator's RBAC in these tests: what the contract allows, nothing more.
pub fn operator_cluster_role() -> ClusterRole {
    let mut bind = rule(
        &["rbac.authorization.k8s.io"],
        &["clusterroles", "roles"],
        &["bind"],
    );
    // `bind` only on the roles the test PrivilegedRoles reference, never wildcard.
    bind.resource_names = Some(vec![
        POD_READER.into(),
        NAMESPACE_READER.into(),
        SECRET_READER.into(),
        NAMESPACE_ADMIN.into(),
    ]);
    ClusterRole {
        metadata: ObjectMeta {
            name: Some("kubepim-e2e-operator".into()),
            ..Default::default()
        },
        rules: Some(vec![
            // Watch the three kinds; status writes; the finalizer on requests.
            rule(
                &["kubepim.io"],
                &["privilegedroles", "eligibilities", "activationrequests"],
                &["get", "list", "watch", "patch", "update"],
            ),
            rule(
                &["kubepim.io"],
                &[
                    "privilegedroles/status",
                    "eligibilities/status",
                    "activationrequests/status",
                ],
                &["get", "patch", "update"],
            ),
            rule(
                &["kubepim.io"],
                &["activationrequests/finalizers"],
                &["update"],
            ),
            // Access reviews: filled and closed through /status, the next one of a schedule
            // created; `manage` is how the review-status policy recognises the controller.
            rule(
                &["kubepim.io"],
                &["accessreviews"],
                &["get", "list", "watch", "create", "manage"],
            ),
            rule(&["kubepim.io"], &["accessreviews/status"], &["patch"]),
            // History retention deletes ended requests.
            rule(&["kubepim.io"], &["activationrequests"], &["delete"]),
            // The grants themselves.
            rule(
                &["rbac.authorization.k8s.io"],
                &["rolebindings", "clusterrolebindings"],
                &["create", "delete", "get", "list", "watch"],
            ),
            bind,
            // PrivilegedRole readiness: does the referenced role exist?
            rule(
                &["rbac.authorization.k8s.io"],
                &["roles", "clusterroles"],
                &["get", "list", "watch"],
            ),
            // kube's event recorder creates, then patches repeated events.
            rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
            // The webhook's fast feedback reads a requested namespace.
            rule(&[""], &["namespaces"], &["get"]),
            rule(&[""], &["serviceaccounts"], &["list"]),
            // The foothold scan of cluster-wide grants (Secrets and Pods stay out, as the
            // chart's default leaves them out).
            rule(
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
                &["list"],
            ),
            rule(
                &["admissionregistration.k8s.io"],
                &[
                    "validatingwebhookconfigurations",
                    "mutatingwebhookconfigurations",
                ],
                &["list"],
            ),
        ]),
        ..Default::default()
    }
}

/// What ordinary users may do without the (later) admission policies.
fn people_cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some("kubepim-e2e-people".into()),
            ..Default::default()
        },
        rules: Some(vec![
            rule(
                &["kubepim.io"],
                &["activationrequests"],
                &[
                    "create", "get", "list", "watch", "patch", "update", "delete",
                ],
            ),
            rule(
                &["kubepim.io"],
                &["activationrequests/status"],
                &["get", "patch", "update"],
            ),
            rule(
                &["kubepim.io"],
                &["privilegedroles", "eligibilities"],
                &["get", "list", "watch"],
            ),
        ]),
        ..Default::default()
    }
}

fn granted_cluster_roles() -> Vec<ClusterRole> {
    vec![
        ClusterRole {
            metadata: ObjectMeta {
                name: Some(POD_READER.into()),
                ..Default::default()
            },
            rules: Some(vec![rule(&[""], &["pods"], &["get", "list", "watch"])]),
            ..Default::default()
        },
        ClusterRole {
            metadata: ObjectMeta {
                name: Some(NAMESPACE_ADMIN.into()),
                ..Default::default()
            },
            rules: Some(vec![
                rule(
                    &[""],
                    &["pods"],
                    &["get", "list", "watch", "create", "delete"],
                ),
                rule(
                    &["rbac.authorization.k8s.io"],
                    &["rolebindings"],
                    &["get", "list", "watch", "create", "delete"],
                ),
            ]),
            ..Default::default()
        },
        ClusterRole {
            metadata: ObjectMeta {
                name: Some(NAMESPACE_READER.into()),
                ..Default::default()
            },
            rules: Some(vec![rule(
                &[""],
                &["namespaces"],
                &["get", "list", "watch"],
            )]),
            ..Default::default()
        },
    ]
}

fn binding(name: &str, role: &str, users: &[&str]) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(
            users
                .iter()
                .map(|u| Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "User".into(),
                    name: u.to_string(),
                    namespace: None,
                })
                .collect(),
        ),
    }
}

/// CRDs (server-side apply, wait for Established and for the resources to be served), the roles
/// the tests grant, and the operator's and the people's RBAC.
async fn bootstrap(admin: &Client) -> Result<()> {
    let ssa = PatchParams::apply(MANAGER).force();
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in kubepim::crdgen::all_crds() {
        let name = crd.metadata.name.clone().expect("crd name");
        crds.patch(&name, &ssa, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
    }
    for crd in kubepim::crdgen::all_crds() {
        let name = crd.metadata.name.clone().expect("crd name");
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .with_context(|| format!("CRD {name} not Established after 30s"))??;
    }
    // Established can precede the REST handlers by a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lp = ListParams::default().limit(1);
        let ok = Api::<PrivilegedRole>::all(admin.clone())
            .list(&lp)
            .await
            .is_ok()
            && Api::<Eligibility>::all(admin.clone())
                .list(&lp)
                .await
                .is_ok()
            && Api::<ActivationRequest>::all(admin.clone())
                .list(&lp)
                .await
                .is_ok();
        if ok {
            break;
        }
        if Instant::now() > deadline {
            bail!("kubepim resources not served 30s after their CRDs were Established");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let mut all_roles = granted_cluster_roles();
    all_roles.push(operator_cluster_role());
    all_roles.push(people_cluster_role());
    for role in all_roles {
        let name = role.metadata.name.clone().unwrap();
        roles
            .patch(&name, &ssa, &Patch::Apply(&role))
            .await
            .with_context(|| format!("applying {name}"))?;
    }
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    for b in [
        binding(
            "kubepim-e2e-operator",
            "kubepim-e2e-operator",
            &["operator"],
        ),
        binding("kubepim-e2e-people", "kubepim-e2e-people", PEOPLE),
    ] {
        let name = b.metadata.name.clone().unwrap();
        bindings
            .patch(&name, &ssa, &Patch::Apply(&b))
            .await
            .with_context(|| format!("applying {name}"))?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// External cluster
// ------------------------------------------------------------------------------------------------

pub struct External {
    kubeconfig: PathBuf,
    admin: Config,
}

impl External {
    async fn load(path: &Path) -> Result<Self> {
        let kc =
            Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
        let admin = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        Ok(Self {
            kubeconfig: path.to_path_buf(),
            admin,
        })
    }

    fn config(&self, user: &str) -> Config {
        let mut config = self.admin.clone();
        if user != "admin" {
            config.auth_info.impersonate = Some(user.into());
            config.auth_info.impersonate_groups = Some(user_groups_without_authenticated(user));
        }
        config
    }
}

fn user_groups_without_authenticated(name: &str) -> Vec<String> {
    user(name).groups.iter().map(|g| g.to_string()).collect()
}

// ------------------------------------------------------------------------------------------------
// Env: what a test holds
// ------------------------------------------------------------------------------------------------

#[derive(Clone)]
enum Cluster {
    Local(Arc<ControlPlane>),
    External(Arc<External>),
}

static SHARED_LOCAL: OnceCell<Arc<ControlPlane>> = OnceCell::const_new();
static EXTERNAL: OnceCell<Arc<External>> = OnceCell::const_new();
/// Tests that need a cluster of their own take turns on an external cluster.
static EXTERNAL_SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An in-process operator, as `kubepim run` would run it, with the `operator` user's identity.
pub struct Operator {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// The result of `run_operator`, once it returned.
    outcome: Arc<Mutex<Option<String>>>,
}

impl Operator {
    fn start(client: Client, settings: OperatorSettings) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let outcome = Arc::new(Mutex::new(None));
        let slot = outcome.clone();
        let shutdown = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(async move {
            let result = kubepim::runtime::run_operator(client, settings, shutdown).await;
            *slot.lock().unwrap() = Some(format!("{result:?}"));
        });
        Self {
            stop: Some(tx),
            task,
            outcome,
        }
    }

    /// `Some(result)` if `run_operator` has returned.
    pub fn exited(&self) -> Option<String> {
        self.outcome.lock().unwrap().clone()
    }

    /// Resolves the shutdown future and waits (up to 30 s) for `run_operator` to return.
    pub async fn stop(mut self) -> String {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let task = &mut self.task;
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(_) => self
                .exited()
                .unwrap_or_else(|| "task ended without a result (panicked?)".into()),
            Err(_) => {
                self.task.abort();
                panic!("run_operator did not return within 30s of its shutdown future resolving")
            }
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A test's view of a cluster: clients per user, unique names, the operator.
pub struct Env {
    operator: Mutex<Option<Operator>>,
    clients: Mutex<BTreeMap<String, Client>>,
    namespaces: Mutex<Vec<String>>,
    cluster: Cluster,
    /// Unique per test: prefix of every name a test creates.
    pub id: String,
    _serial: Option<tokio::sync::MutexGuard<'static, ()>>,
}

enum Want {
    Shared,
    Isolated,
    /// A control plane of this test's own with these options; never an external cluster.
    Local(ControlPlaneOptions),
}

impl Env {
    /// A control plane shared by all tests of this binary (no operator isolation).
    pub async fn shared(test: &str) -> Option<Self> {
        Self::new(test, Want::Shared).await
    }

    /// A control plane of this test's own (or exclusive use of the external cluster).
    pub async fn isolated(test: &str) -> Option<Self> {
        Self::new(test, Want::Isolated).await
    }

    /// A control plane of this test's own, started with `options` (from `$KUBEBUILDER_ASSETS`
    /// only: `None`, after the SKIPPED line, without it).
    pub async fn local(test: &str, options: ControlPlaneOptions) -> Option<Self> {
        Self::new(test, Want::Local(options)).await
    }

    async fn new(test: &str, want: Want) -> Option<Self> {
        // The operator's logs, captured per test by libtest (shown for failing tests).
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                // The builder logs every non-2xx answer as an error, /readyz polling included.
                "info,kube_client=warn,kube_runtime=warn,kube_client::client::builder=off",
            )
        });
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        let id = unique_id(test);
        let external = std::env::var_os(KUBECONFIG_ENV).filter(|v| !v.is_empty());
        let assets = std::env::var_os(ASSETS_ENV).filter(|v| !v.is_empty());
        let external = external.filter(|_| !matches!(want, Want::Local(_)));
        let (cluster, serial) = if let Some(path) = external {
            let ext = EXTERNAL
                .get_or_try_init(|| async {
                    let ext = External::load(Path::new(&path)).await?;
                    bootstrap(&Client::try_from(ext.config("admin"))?).await?;
                    anyhow::Ok(Arc::new(ext))
                })
                .await
                .unwrap_or_else(|e| panic!("external cluster from ${KUBECONFIG_ENV}: {e:#}"))
                .clone();
            let serial = match want {
                Want::Isolated | Want::Local(_) => Some(EXTERNAL_SERIAL.lock().await),
                Want::Shared => None,
            };
            (Cluster::External(ext), serial)
        } else if let Some(assets) = assets {
            let cp = match want {
                Want::Shared => SHARED_LOCAL
                    .get_or_try_init(|| async {
                        let cp =
                            start_and_bootstrap(Path::new(&assets), &Default::default()).await?;
                        anyhow::Ok(Arc::new(cp))
                    })
                    .await
                    .unwrap_or_else(|e| panic!("control plane: {e:#}"))
                    .clone(),
                Want::Isolated => Arc::new(
                    start_and_bootstrap(Path::new(&assets), &Default::default())
                        .await
                        .unwrap_or_else(|e| panic!("control plane: {e:#}")),
                ),
                Want::Local(options) => Arc::new(
                    start_and_bootstrap(Path::new(&assets), &options)
                        .await
                        .unwrap_or_else(|e| panic!("control plane: {e:#}")),
                ),
            };
            (Cluster::Local(cp), None)
        } else {
            say(SKIP_LINE);
            return None;
        };
        Some(Self {
            operator: Mutex::new(None),
            clients: Mutex::new(BTreeMap::new()),
            namespaces: Mutex::new(Vec::new()),
            cluster,
            id,
            _serial: serial,
        })
    }

    /// How long the control plane took to become ready (`None` on an external cluster).
    pub fn startup(&self) -> Option<Duration> {
        match &self.cluster {
            Cluster::Local(cp) => Some(cp.startup),
            Cluster::External(_) => None,
        }
    }

    /// Client configuration for a test user.
    pub fn config(&self, user: &str) -> Config {
        match &self.cluster {
            Cluster::Local(cp) => cp.config(user),
            Cluster::External(ext) => ext.config(user),
        }
    }

    /// A client authenticated as `user` (one of [`USERS`]).
    pub fn client(&self, user: &str) -> Client {
        let mut clients = self.clients.lock().unwrap();
        clients
            .entry(user.to_string())
            .or_insert_with(|| Client::try_from(self.config(user)).expect("client"))
            .clone()
    }

    pub fn admin(&self) -> Client {
        self.client("admin")
    }

    /// A kubeconfig file for `user` (on an external cluster: the admin kubeconfig, for admin only).
    pub fn kubeconfig(&self, user: &str) -> Option<PathBuf> {
        match &self.cluster {
            Cluster::Local(cp) => Some(cp.kubeconfig(user)),
            Cluster::External(ext) => (user == "admin").then(|| ext.kubeconfig.clone()),
        }
    }

    /// A cluster-unique name: `<test id>-<base>`.
    pub fn name(&self, base: &str) -> String {
        let mut name = format!("{}-{base}", self.id);
        name.truncate(63);
        name.trim_end_matches('-').to_string()
    }

    /// Labels every object created by this test carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(TEST_LABEL.to_string(), self.id.clone())])
    }

    /// Metadata with a unique name and the test label.
    pub fn meta(&self, base: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name(base)),
            labels: Some(self.labels()),
            ..Default::default()
        }
    }

    /// Creates a namespace named `<test id>-<base>`.
    pub async fn namespace(&self, base: &str) -> String {
        let name = self.name(base);
        let ns = Namespace {
            metadata: self.meta(base),
            ..Default::default()
        };
        Api::<Namespace>::all(self.admin())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        self.namespaces.lock().unwrap().push(name.clone());
        name
    }

    /// The requester as admission would record it for `user`.
    pub fn requester(&self, user: &str) -> Requester {
        Requester {
            username: user.to_string(),
            uid: match &self.cluster {
                Cluster::Local(_) => Some(format!("uid-{user}")),
                Cluster::External(_) => None,
            },
            groups: groups_of(user),
            extra: BTreeMap::new(),
        }
    }

    /// The local control plane (`None` on an external cluster): its address, and restarts of
    /// kube-apiserver and etcd.
    pub fn control_plane(&self) -> Option<Arc<ControlPlane>> {
        match &self.cluster {
            Cluster::Local(cp) => Some(cp.clone()),
            Cluster::External(_) => None,
        }
    }

    /// Starts the in-process operator (the previous one must have been stopped).
    pub fn start_operator(&self, settings: OperatorSettings) {
        self.start_operator_with(settings, self.config("operator"));
    }

    /// Starts the in-process operator with this client configuration (e.g. the `operator` user's
    /// through a proxy).
    pub fn start_operator_with(&self, settings: OperatorSettings, mut config: Config) {
        let mut slot = self.operator.lock().unwrap();
        assert!(
            slot.is_none(),
            "an operator is already running in this test"
        );
        // As `kubepim run` does: no library retries of minutes; the reconcilers retry themselves.
        config.default_retry = false;
        let client = Client::try_from(config).expect("operator client");
        *slot = Some(Operator::start(client, settings));
    }

    /// Stops the operator and returns what `run_operator` returned.
    pub async fn stop_operator(&self) -> String {
        let op = self
            .operator
            .lock()
            .unwrap()
            .take()
            .expect("no operator running");
        op.stop().await
    }

    /// Panics if the operator was started and has returned on its own (e.g. with an error).
    pub fn check_operator(&self) {
        if let Some(op) = self.operator.lock().unwrap().as_ref()
            && let Some(outcome) = op.exited()
        {
            panic!("the operator exited on its own: {outcome}");
        }
    }

    /// One line on the operator's state, for failure messages.
    pub fn operator_state(&self) -> String {
        match self.operator.lock().unwrap().as_ref() {
            None => "operator not running (not started or stopped by the test)".into(),
            Some(op) => match op.exited() {
                None => "operator running".into(),
                Some(outcome) => format!("operator EXITED: {outcome}"),
            },
        }
    }
}

async fn start_and_bootstrap(assets: &Path, options: &ControlPlaneOptions) -> Result<ControlPlane> {
    let cp = ControlPlane::start_with(assets, options).await?;
    let admin = Client::try_from(cp.config("admin"))?;
    bootstrap(&admin)
        .await
        .context("bootstrapping the control plane")?;
    if cp.keep {
        say(&format!(
            "kubepim-e2e: control plane {} ready in {:.1?}; files in {}",
            cp.url,
            cp.startup,
            cp.dir.display()
        ));
    }
    Ok(cp)
}

fn unique_id(test: &str) -> String {
    let mut slug: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    slug.truncate(24);
    let slug = slug.trim_matches('-');
    format!("{slug}-{}", random_hex(2))
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(op) = self
            .operator
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            drop(op); // aborts the task
        }
        if let Cluster::External(ext) = &self.cluster {
            // Best effort, on a thread of its own: we may be unwinding inside the test's runtime.
            let config = ext.admin.clone();
            let id = self.id.clone();
            let namespaces =
                std::mem::take(self.namespaces.get_mut().unwrap_or_else(|e| e.into_inner()));
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let cleanup = clean_external(config, id, namespaces);
                    let _ = tokio::time::timeout(Duration::from_secs(30), cleanup).await;
                })
            })
            .join();
        }
    }
}

async fn clean_external(config: Config, id: String, namespaces: Vec<String>) -> Result<()> {
    let client = Client::try_from(config)?;
    let lp = ListParams::default().labels(&format!("{TEST_LABEL}={id}"));
    let dp = DeleteParams::default();
    let requests: Api<ActivationRequest> = Api::all(client.clone());
    for r in requests.list(&lp).await?.items {
        let name = r.metadata.name.clone().unwrap_or_default();
        let _ = requests.delete(&name, &dp).await;
        // Nobody runs the finalizer once the test's operator is gone.
        let _ = requests
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await;
    }
    let _ = Api::<Eligibility>::all(client.clone())
        .delete_collection(&dp, &lp)
        .await;
    let _ = Api::<PrivilegedRole>::all(client.clone())
        .delete_collection(&dp, &lp)
        .await;
    let _ = Api::<ClusterRoleBinding>::all(client.clone())
        .delete_collection(&dp, &lp)
        .await;
    for ns in namespaces {
        let _ = Api::<Namespace>::all(client.clone()).delete(&ns, &dp).await;
    }
    Ok(())
}
