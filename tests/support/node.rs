//! One node for a test's control plane, so the operator runs in a pod as `helm install` puts it
//! there: containerd (own root, state and socket), a kubelet, kube-controller-manager and
//! kube-scheduler. Used by `tests/e2e_node.rs` through `#[path]`.
//!
//! Design:
//! - Opt-in: `KUBEPIM_NODE_E2E=1`, root, and the binaries and images below; otherwise
//!   [`prerequisites`] says what is missing and the suite prints one SKIPPED line.
//! - Pod network: a point-to-point CNI plugin written as a shell script (no CNI binaries needed):
//!   one veth per pod, a /32 from 10.244.0.0/16, the node's address as the pod's gateway. Pods are
//!   not on the host network, so two replicas (and a surge pod during a rollout) can listen on the
//!   same ports. The host reaches pod addresses through the veth routes, so kube-apiserver calls
//!   the webhook at its endpoint (`--enable-aggregator-routing`) and the test scrapes `/metrics`.
//! - No kube-proxy: the pods reach the API server at the node's address (the chart's `extraEnv`
//!   sets `KUBERNETES_SERVICE_HOST`/`_PORT`, which win over the kubelet's `kubernetes` Service
//!   variables).
//! - The kubelet authenticates as `system:node:<name>` in `system:nodes` (a token user), authorized
//!   by the Node authorizer and NodeRestriction, as on a real cluster. kube-controller-manager and
//!   kube-scheduler use the harness's `admin` (system:masters).
//! - Clean-up: a shell script in the node's directory, run on drop and by a watchdog when the test
//!   process dies: stops the kubelet and controllers, kills every container task, containerd and
//!   its shims (found by the node directory in their command line), removes the pods' network
//!   namespaces and the mounts under the directory, then the directory.
use std::io::Write as _;
use std::net::{IpAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::Api;

use crate::support::envtest::{ASSETS_ENV, ControlPlane, KEEP_ENV};

pub const NODE_E2E_ENV: &str = "KUBEPIM_NODE_E2E";
pub const KUBELET_ENV: &str = "KUBEPIM_KUBELET";
pub const SCHEDULER_ENV: &str = "KUBEPIM_KUBE_SCHEDULER";
/// A `docker save`/OCI tarball of the sandbox ("pause") image, tagged [`PAUSE_IMAGE`].
pub const PAUSE_ENV: &str = "KUBEPIM_PAUSE_IMAGE";
/// The kubepim image tarball (`scripts/build-image.sh`).
pub const IMAGE_ENV: &str = "KUBEPIM_IMAGE";
/// The node's address (default: the source address of the default route).
pub const NODE_IP_ENV: &str = "KUBEPIM_NODE_IP";
const DEFAULT_KUBELET: &str = "/opt/k8s-build/bin/kubelet";
const DEFAULT_SCHEDULER: &str = "/opt/k8s-build/bin/kube-scheduler";
const DEFAULT_PAUSE: &str = "/opt/k8s-build/pause/pause.tar";
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";
pub const NODE_NAME: &str = "kubepim-e2e-node";

/// The kubelet's identity (a token user of the control plane).
pub fn node_user() -> (String, Vec<String>) {
    (
        format!("system:node:{NODE_NAME}"),
        vec!["system:nodes".into()],
    )
}

/// What the suite needs, found.
#[derive(Clone, Debug)]
pub struct Prerequisites {
    pub assets: PathBuf,
    pub kubelet: PathBuf,
    pub scheduler: PathBuf,
    pub pause_image: PathBuf,
    pub image: PathBuf,
    pub node_ip: IpAddr,
}

fn from_env(var: &str, default: impl Into<PathBuf>) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| default.into())
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The source address of the default route (a UDP "connect" sends nothing).
fn default_route_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("203.0.113.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// `Err(reason)`: the suite is skipped (not opted in, or something missing).
pub fn prerequisites() -> Result<Prerequisites, String> {
    if std::env::var(NODE_E2E_ENV).as_deref() != Ok("1") {
        return Err(format!(
            "set {NODE_E2E_ENV}=1 (as root, with {ASSETS_ENV}, a kubelet, kube-scheduler, \
             containerd and the image; see CONTRIBUTING.md) to run the operator in a pod"
        ));
    }
    let Some(assets) = std::env::var_os(ASSETS_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
    else {
        return Err(format!(
            "{NODE_E2E_ENV}=1 but {ASSETS_ENV} is not set (etcd, kube-apiserver, \
             kube-controller-manager)"
        ));
    };
    let image = from_env(
        IMAGE_ENV,
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/image/kubepim.tar"),
    );
    let pre = Prerequisites {
        kubelet: from_env(KUBELET_ENV, DEFAULT_KUBELET),
        scheduler: from_env(SCHEDULER_ENV, DEFAULT_SCHEDULER),
        pause_image: from_env(PAUSE_ENV, DEFAULT_PAUSE),
        image,
        node_ip: std::env::var(NODE_IP_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .or_else(default_route_address)
            .unwrap_or(IpAddr::from([127, 0, 0, 1])),
        assets,
    };
    let mut missing = Vec::new();
    for (what, path) in [
        ("etcd", pre.assets.join("etcd")),
        ("kube-apiserver", pre.assets.join("kube-apiserver")),
        (
            "kube-controller-manager",
            pre.assets.join("kube-controller-manager"),
        ),
        ("kubelet", pre.kubelet.clone()),
        ("kube-scheduler", pre.scheduler.clone()),
        ("the pause image", pre.pause_image.clone()),
        ("the kubepim image", pre.image.clone()),
    ] {
        if !path.is_file() {
            missing.push(format!("{what} ({})", path.display()));
        }
    }
    for bin in ["containerd", "ctr", "runc", "ip", "flock"] {
        if !on_path(bin) {
            missing.push(format!("{bin} (not on PATH)"));
        }
    }
    if !is_root() {
        missing.push("root (the kubelet and containerd need it)".into());
    }
    if pre.node_ip.is_loopback() {
        missing.push(format!(
            "a non-loopback node address (none on the default route; set {NODE_IP_ENV})"
        ));
    }
    if missing.is_empty() {
        Ok(pre)
    } else {
        Err(format!(
            "{NODE_E2E_ENV}=1 but missing: {}",
            missing.join(", ")
        ))
    }
}

/// The pod network's plugin (see the module comment). `@NODE_IP@` and `@DIR@` are replaced.
const PTP_PLUGIN: &str = r#"#!/bin/sh
set -eu
exec 2>>"@DIR@/cni.log"
cat >/dev/null
state="@DIR@/state"
mkdir -p "$state"
host="vk$(printf %s "${CNI_CONTAINERID:-x}" | cut -c1-12)"
case "$CNI_COMMAND" in
VERSION)
  echo '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}' ;;
ADD)
  exec 9>"$state/lock"; flock 9
  n=$(cat "$state/next" 2>/dev/null || echo 0)
  echo $((n + 1)) >"$state/next"
  echo "$CNI_NETNS" >>"@DIR@/netns"
  echo "$host" >>"@DIR@/links"
  flock -u 9
  ip="10.244.$((n / 250)).$((n % 250 + 2))"
  ns=$(basename "$CNI_NETNS")
  ip link add "$host" type veth peer name "p$host"
  ip link set "p$host" netns "$ns"
  ip -n "$ns" link set "p$host" name "$CNI_IFNAME"
  ip -n "$ns" addr add "$ip/32" dev "$CNI_IFNAME"
  ip -n "$ns" link set "$CNI_IFNAME" up
  ip -n "$ns" route add default via "@NODE_IP@" dev "$CNI_IFNAME" onlink
  ip link set "$host" up
  ip route add "$ip/32" dev "$host"
  printf '{"cniVersion":"0.4.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"version":"4","address":"%s/32","gateway":"@NODE_IP@","interface":0}]}\n' \
    "$CNI_IFNAME" "$CNI_NETNS" "$ip" ;;
DEL)
  ip link del "$host" 2>/dev/null || true ;;
esac
"#;

/// containerd runs the `loopback` plugin for every sandbox.
const LOOPBACK_PLUGIN: &str = r#"#!/bin/sh
set -eu
cat >/dev/null
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}' ;;
ADD)
  ip -n "$(basename "$CNI_NETNS")" link set lo up
  printf '{"cniVersion":"0.4.0","interfaces":[{"name":"lo","sandbox":"%s"}],"ips":[{"version":"4","address":"127.0.0.1/8","interface":0}]}\n' "$CNI_NETNS" ;;
esac
"#;

/// Tears the node down; see the module comment. Environment: D, SOCK, PIDS, CONTAINERD, KEEP.
const CLEANUP: &str = r#"
kill $PIDS 2>/dev/null
sleep 1
kill -9 $PIDS 2>/dev/null
ctr="ctr -n k8s.io -a $SOCK"
for t in $($ctr tasks ls -q 2>/dev/null); do $ctr tasks kill -s SIGKILL "$t" 2>/dev/null; done
sleep 1
for t in $($ctr tasks ls -q 2>/dev/null); do $ctr tasks rm -f "$t" >/dev/null 2>&1; done
for c in $($ctr containers ls -q 2>/dev/null); do $ctr containers rm "$c" >/dev/null 2>&1; done
kill $CONTAINERD 2>/dev/null
sleep 1
kill -9 $CONTAINERD 2>/dev/null
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = "$$" ] && continue
  if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF "$D/"; then kill -9 "$pid" 2>/dev/null; fi
done
if [ -f "$D/netns" ]; then
  while read -r ns; do umount "$ns" 2>/dev/null; rm -f "$ns"; done <"$D/netns"
fi
if [ -f "$D/links" ]; then
  while read -r l; do ip link del "$l" 2>/dev/null; done <"$D/links"
fi
grep -F " $D/" /proc/self/mountinfo | cut -d' ' -f5 | sort -r | while read -r m; do
  umount -l "$m" 2>/dev/null
done
for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
done
[ -n "$KEEP" ] || rm -rf "$D"
true
"#;

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    // Kubelet lines can be kilobytes long (whole container specs): the start of each is enough.
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.chars().take(400).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The node's processes and directory.
pub struct Node {
    pub dir: PathBuf,
    pub ip: IpAddr,
    socket: PathBuf,
    keep: bool,
    /// kubelet, kube-controller-manager, kube-scheduler (stopped first), then containerd.
    children: Vec<(&'static str, Child, PathBuf)>,
    containerd: Option<Child>,
    watchdog: Option<(Child, ChildStdin)>,
}

impl Node {
    /// Starts containerd, imports the images, and starts the kubelet and the controllers against
    /// `cp` (started with [`ControlPlaneOptions::nodes`](crate::support::envtest::ControlPlaneOptions)
    /// and the [`node_user`]). Returns once the node is Ready and schedulable.
    pub async fn start(cp: &ControlPlane, pre: &Prerequisites) -> Result<Node> {
        let dir = tempfile::Builder::new()
            .prefix("kubepim-node-")
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::Builder::new().prefix("kubepim-node-").tempdir())?
            .keep();
        let keep = std::env::var_os(KEEP_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        let mut node = Node {
            socket: dir.join("containerd.sock"),
            dir,
            ip: pre.node_ip,
            keep,
            children: Vec::new(),
            containerd: None,
            watchdog: None,
        };
        node.start_containerd(pre).await?;
        node.start_kubernetes(cp, pre)?;
        node.arm_watchdog();
        node.wait_ready(cp).await?;
        Ok(node)
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn log(&self, name: &str) -> Result<(Stdio, Stdio)> {
        let file = std::fs::File::create(self.dir.join(name))?;
        Ok((file.try_clone()?.into(), file.into()))
    }

    async fn start_containerd(&mut self, pre: &Prerequisites) -> Result<()> {
        let d = self.dir.display().to_string();
        let bin = self.dir.join("cni/bin");
        std::fs::create_dir_all(&bin)?;
        std::fs::create_dir_all(self.dir.join("cni/net.d"))?;
        let ip = pre.node_ip.to_string();
        for (name, text) in [
            ("kubepim-e2e-ptp", PTP_PLUGIN.to_string()),
            ("loopback", LOOPBACK_PLUGIN.to_string()),
        ] {
            let path = bin.join(name);
            let text = text.replace("@DIR@", &d).replace("@NODE_IP@", &ip);
            std::fs::write(&path, text)?;
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::write(
            self.dir.join("cni/net.d/10-kubepim-e2e.conflist"),
            r#"{"cniVersion":"0.4.0","name":"kubepim-e2e","plugins":[{"type":"kubepim-e2e-ptp"}]}"#,
        )?;
        // restrict_oom_score_adj: the kubelet asks for -998 for sandboxes, which needs
        // CAP_SYS_RESOURCE (not every machine that runs this suite has it, e.g. in a container).
        let config = format!(
            r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{sock}"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  sandbox_image = "{PAUSE_IMAGE}"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/net.d"
"#,
            sock = self.socket.display(),
        );
        std::fs::write(self.dir.join("containerd.toml"), config)?;
        let (out, err) = self.log("containerd.log")?;
        let mut containerd = Command::new("containerd")
            .args(["--config", &self.path("containerd.toml")])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("spawning containerd")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.socket.exists() {
            if let Some(status) = containerd.try_wait()? {
                bail!(
                    "containerd exited ({status}):\n{}",
                    tail(&self.dir.join("containerd.log"), 20)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd socket missing after 30s:\n{}",
                    tail(&self.dir.join("containerd.log"), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.containerd = Some(containerd);
        for image in [&pre.pause_image, &pre.image] {
            let out = Command::new("ctr")
                .args(["-n", "k8s.io", "-a", &self.socket.display().to_string()])
                .args(["images", "import"])
                .arg(image)
                .output()
                .context("running ctr images import")?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                bail!(
                    "ctr images import {}: {stdout}{}",
                    image.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            // "unpacking kubepim:0.1.0 (sha256:…)...done": a short name as the tarball has it,
            // while the kubelet asks the runtime for the normalized docker.io/library/kubepim:0.1.0.
            for line in stdout.lines() {
                let Some(name) = line
                    .strip_prefix("unpacking ")
                    .and_then(|l| l.split_whitespace().next())
                else {
                    continue;
                };
                if !name.contains('/') {
                    self.ctr(&["images", "tag", name, &format!("docker.io/library/{name}")])?;
                }
            }
        }
        Ok(())
    }

    fn ctr(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("ctr")
            .args(["-n", "k8s.io", "-a", &self.socket.display().to_string()])
            .args(args)
            .output()
            .context("running ctr")?;
        if !out.status.success() {
            bail!(
                "ctr {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    fn start_kubernetes(&mut self, cp: &ControlPlane, pre: &Prerequisites) -> Result<()> {
        let d = self.dir.display().to_string();
        let kubelet_port = free_port()?;
        let kubelet_config = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
address: 127.0.0.1
port: {kubelet_port}
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
resolvConf: /etc/resolv.conf
podLogsDir: {d}/pod-logs
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{}}
syncFrequency: 10s
fileCheckFrequency: 10s
",
        );
        std::fs::write(self.dir.join("kubelet.yaml"), kubelet_config)?;
        let (node_user, _) = node_user();
        let admin = cp.kubeconfig("admin").display().to_string();
        let (out, err) = self.log("kubelet.log")?;
        let kubelet = Command::new(&pre.kubelet)
            .args(["--config", &self.path("kubelet.yaml")])
            .args([
                "--kubeconfig",
                &cp.kubeconfig(&node_user).display().to_string(),
            ])
            .args(["--root-dir", &self.path("kubelet")])
            .args(["--cert-dir", &self.path("kubelet-pki")])
            .args(["--hostname-override", NODE_NAME])
            .args(["--node-ip", &pre.node_ip.to_string()])
            .args([
                "--container-runtime-endpoint",
                &format!("unix://{}", self.socket.display()),
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("spawning the kubelet")?;
        self.children
            .push(("kubelet", kubelet, self.dir.join("kubelet.log")));

        // Deployments, ReplicaSets, endpoints for the webhook Service, ServiceAccounts and their
        // CA (kube-root-ca.crt), garbage collection of old ReplicaSets' pods, namespaces, and the
        // node lifecycle (it lifts the not-ready taint the kubelet registers with).
        let controllers = [
            "deployment-controller",
            "replicaset-controller",
            "endpoints-controller",
            "endpointslice-controller",
            "serviceaccount-controller",
            "serviceaccount-token-controller",
            "root-ca-certificate-publisher-controller",
            "garbage-collector-controller",
            "namespace-controller",
            "node-lifecycle-controller",
        ]
        .join(",");
        let (out, err) = self.log("kube-controller-manager.log")?;
        let kcm = Command::new(pre.assets.join("kube-controller-manager"))
            .args(["--kubeconfig", &admin])
            .args(["--authentication-kubeconfig", &admin])
            .args(["--authorization-kubeconfig", &admin])
            .args(["--bind-address", "127.0.0.1"])
            .args(["--secure-port", &free_port()?.to_string()])
            .args(["--cert-dir", &self.path("kcm-certs")])
            .args([
                "--service-account-private-key-file",
                &cp.service_account_key_file().display().to_string(),
            ])
            .args(["--root-ca-file", &cp.ca_file().display().to_string()])
            .args(["--use-service-account-credentials=false"])
            .args(["--controllers", &controllers])
            .args(["--leader-elect=false"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("spawning kube-controller-manager")?;
        self.children.push((
            "kube-controller-manager",
            kcm,
            self.dir.join("kube-controller-manager.log"),
        ));

        let (out, err) = self.log("kube-scheduler.log")?;
        let scheduler = Command::new(&pre.scheduler)
            .args(["--kubeconfig", &admin])
            .args(["--authentication-kubeconfig", &admin])
            .args(["--authorization-kubeconfig", &admin])
            .args(["--bind-address", "127.0.0.1"])
            .args(["--secure-port", &free_port()?.to_string()])
            .args(["--cert-dir", &self.path("scheduler-certs")])
            .args(["--leader-elect=false"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("spawning kube-scheduler")?;
        self.children.push((
            "kube-scheduler",
            scheduler,
            self.dir.join("kube-scheduler.log"),
        ));
        Ok(())
    }

    fn cleanup_command(&self, script: &str) -> Command {
        let mut cmd = Command::new("sh");
        let pids: Vec<String> = self
            .children
            .iter()
            .map(|(_, c, _)| c.id().to_string())
            .collect();
        cmd.arg("-c")
            .arg(script)
            .env("D", &self.dir)
            .env("SOCK", &self.socket)
            .env("PIDS", pids.join(" "))
            .env(
                "CONTAINERD",
                self.containerd
                    .as_ref()
                    .map(|c| c.id().to_string())
                    .unwrap_or_default(),
            )
            .env("KEEP", if self.keep { "1" } else { "" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// The clean-up script, run when this process goes away without dropping the node.
    fn arm_watchdog(&mut self) {
        let script = format!("cat >/dev/null\n{CLEANUP}");
        let mut cmd = self.cleanup_command(&script);
        self.watchdog = cmd
            .stdin(Stdio::piped())
            .spawn()
            .ok()
            .and_then(|mut c| c.stdin.take().map(|stdin| (c, stdin)));
    }

    /// Panics-free check that every process is still running (`Err` with the log's tail if not).
    pub fn check(&mut self) -> Result<()> {
        for (name, child, log) in &mut self.children {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited ({status}):\n{}", tail(log, 30));
            }
        }
        if let Some(c) = self.containerd.as_mut()
            && let Some(status) = c.try_wait()?
        {
            bail!(
                "containerd exited ({status}):\n{}",
                tail(&self.dir.join("containerd.log"), 30)
            );
        }
        Ok(())
    }

    async fn wait_ready(&mut self, cp: &ControlPlane) -> Result<()> {
        let nodes: Api<KubeNode> = Api::all(kube::Client::try_from(cp.config("admin"))?);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.check()?;
            let state = match nodes.get_opt(NODE_NAME).await? {
                None => "not registered".to_string(),
                Some(n) => {
                    let ready = n
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                        .map(|c| {
                            format!(
                                "Ready={} {}",
                                c.status,
                                c.message.clone().unwrap_or_default()
                            )
                        })
                        .unwrap_or_else(|| "no Ready condition".into());
                    let taints = n.spec.and_then(|s| s.taints).unwrap_or_default();
                    if ready.starts_with("Ready=True") && taints.is_empty() {
                        return Ok(());
                    }
                    let taints: Vec<String> = taints.into_iter().map(|t| t.key).collect();
                    format!("{ready}; taints {taints:?}")
                }
            };
            if Instant::now() > deadline {
                bail!(
                    "node {NODE_NAME} not ready and schedulable after 120s: {state}\nkubelet:\n{}",
                    tail(&self.dir.join("kubelet.log"), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The tail of a component's log (`kubelet`, `containerd`, `kube-controller-manager`, …).
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        tail(&self.dir.join(format!("{component}.log")), lines)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
            drop(stdin);
        }
        let _ = self.cleanup_command(CLEANUP).status();
        for (_, child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut c) = self.containerd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.keep {
            say(&format!(
                "kubepim-e2e: kept node directory {}",
                self.dir.display()
            ));
        }
    }
}
