/**
 * Where things live on a node: every host path and unit name that berth
 * writes, reads or manages, defined here and nowhere else (renderers, the
 * run phase, the agent, doctor and `berth status` all import them).
 * Constants only, no imports, so any layer can use them without loading
 * the renderers or gRPC.
 */

// ---------------------------------------------------------------- berth itself

/** Where the packages install berth; the units' ExecStart= when nothing else is known (src/cli/self.ts). */
export const DEFAULT_BERTH_PATH = "/usr/bin/berth";

/** The run phase's status file, read by the agent and `berth status`. */
export const RUN_STATUS_PATH = "/run/berth/status.json";

/** The lock every writing berth run holds (a directory; src/host/lock.ts). */
export const LOCK_PATH = "/run/berth/lock";

/** Task scripts (`berth-task-<name>.service` runs `<dir>/<name>.sh`). */
export const TASK_SCRIPT_DIR = "/etc/berth/tasks";

/** Present once berth-reboot-once.service has asked for its reboot. */
export const REBOOT_MARKER = "/var/lib/berth/rebooted-once";

// ---------------------------------------------------------------- systemd

/** Where berth writes its units and drop-ins. */
export const UNIT_DIR = "/etc/systemd/system";

/** The drop-in that hands a non-default berth path to the config phase at boot (`berth install --berth-path`). */
export const BERTH_PATH_DROPIN = `${UNIT_DIR}/berth-config.service.d/10-berth-path.conf`;

/** The manager-wide environment (`instance.environment.default`). */
export const SYSTEM_ENVIRONMENT_PATH = "/etc/systemd/system.conf.d/environment.conf";

/** systemd-resolved's drop-in (nameservers and search domains). */
export const RESOLVED_DROPIN_PATH = "/run/systemd/resolved.conf.d/40-eks.conf";

/** The drop-in that makes multi-user.target want every local-storage mount unit. */
export const LOCAL_STORAGE_WANTS = `${UNIT_DIR}/multi-user.target.d/20-berth-local-storage.conf`;

export const UNITS = {
  config: "berth-config.service",
  run: "berth-run.service",
  agent: "berth-agent.service",
  target: "berth.target",
  tasks: "berth-tasks.target",
  rebootOnce: "berth-reboot-once.service",
  kubelet: "kubelet.service",
  containerd: "containerd.service",
  runtimeSlice: "runtime.slice",
} as const;

/** The SOCI snapshotter's unit (FastImagePull). */
export const SOCI_UNIT = "soci-snapshotter.service";

// ---------------------------------------------------------------- containerd

/** containerd's gRPC socket (CRI and its own API). */
export const CONTAINERD_SOCKET = "/run/containerd/containerd.sock";
/** The same socket as the kubelet's `containerRuntimeEndpoint`. */
export const CONTAINERD_SOCKET_ENDPOINT = `unix://${CONTAINERD_SOCKET}`;

export const CONTAINERD_CONFIG_PATH = "/etc/containerd/config.toml";
export const BASE_RUNTIME_SPEC_PATH = "/etc/containerd/base-runtime-spec.json";
/** What the AMI says containerd's version is (read before asking the binary). */
export const CONTAINERD_VERSION_FILE = "/etc/eks/containerd-version.txt";
export const NVIDIA_RUNTIME_PATH = "/usr/bin/nvidia-container-runtime";

export const SOCI_SOCKET = "/run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock";
/** The SOCI socket as the kubelet's `imageServiceEndpoint`. */
export const SOCI_IMAGE_SERVICE_ENDPOINT = `unix://${SOCI_SOCKET}`;
export const SOCI_ROOT = "/var/lib/soci-snapshotter-grpc";

/** containerd's root (images, snapshots): kubelet's imagefs. */
export const CONTAINERD_ROOT = "/var/lib/containerd";
/** kubelet's root directory: kubelet's nodefs. */
export const KUBELET_ROOT = "/var/lib/kubelet";
/** kubelet's current client certificate (rotated by kubelet itself). */
export const KUBELET_CLIENT_CERT_PATH = "/var/lib/kubelet/pki/kubelet-client-current.pem";
/** Pod logs, under kubelet's nodefs. */
export const POD_LOG_DIR = "/var/log/pods";
/** Where the node's logs live (nodefs, for kubelet's eviction thresholds). */
export const LOG_DIR = "/var/log";
export const SOCI_CONFIG_PATH = "/etc/soci-snapshotter-grpc/config.toml";
export const SOCI_CONTAINERD_DROPIN_PATH = `${UNIT_DIR}/containerd.service.d/10-soci-snapshotter.conf`;

// ---------------------------------------------------------------- kubelet

export const KUBELET_BINARY = "/usr/bin/kubelet";
/** What the AMI says the kubelet's version is (read before asking the binary). */
export const KUBELET_VERSION_FILE = "/etc/eks/kubelet-version.txt";
/** The kubelet reads its extra flags from `NODEADM_KUBELET_ARGS` in this file (nodeadm's names, so both tools interoperate). */
export const KUBELET_ENVIRONMENT_PATH = "/etc/eks/kubelet/environment";
export const KUBELET_CONFIG_PATH = "/etc/kubernetes/kubelet/config.json";
export const KUBELET_CONFIG_DIR = "/etc/kubernetes/kubelet/config.json.d";
export const KUBELET_DROPIN_PATH = `${KUBELET_CONFIG_DIR}/40-nodeadm.conf`;
export const KUBECONFIG_PATH = "/var/lib/kubelet/kubeconfig";
/** Outposts: kubelet TLS-bootstraps from this one and writes KUBECONFIG_PATH itself. */
export const BOOTSTRAP_KUBECONFIG_PATH = "/var/lib/kubelet/bootstrap-kubeconfig";
export const CA_CERT_PATH = "/etc/kubernetes/pki/ca.crt";
export const IMAGE_CREDENTIAL_PROVIDER_DIR = "/etc/eks/image-credential-provider";
export const IMAGE_CREDENTIAL_PROVIDER_CONFIG_PATH = `${IMAGE_CREDENTIAL_PROVIDER_DIR}/config.json`;
export const ECR_CREDENTIAL_PROVIDER_BIN = `${IMAGE_CREDENTIAL_PROVIDER_DIR}/ecr-credential-provider`;

// ---------------------------------------------------------------- the rest of the host

/** Outposts: the API server's addresses go into a block of this file. */
export const HOSTS_FILE_PATH = "/etc/hosts";

export const DISK_BY_ID_DIR = "/dev/disk/by-id";
/** Where `localStorage` mounts the array (nodeadm's default). */
export const DEFAULT_LOCAL_STORAGE_PATH = "/mnt/k8s-disks";
/** The md array's name (`mdadm --name`) and device, as nodeadm's. */
export const RAID_NAME = "kubernetes";
export const RAID_DEVICE = `/dev/md/${RAID_NAME}`;
/**
 * mdadm reads these directories by default (the first when /etc/mdadm.conf
 * exists, else the second); berth writes its ARRAY line to both.
 */
export const MDADM_CONFIG_FILES = ["/etc/mdadm.conf.d/berth.conf", "/etc/mdadm/mdadm.conf.d/berth.conf"] as const;
