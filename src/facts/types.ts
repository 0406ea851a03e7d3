/**
 * Facts about the node that rendering needs, gathered at the edge (IMDS, EC2,
 * sysfs, version probes) and passed into the pure core.
 */
import type { OutpostFacts } from "./dns.ts";
import type { InstanceStoreDisk } from "./disks.ts";

export interface InstanceFacts {
  id: string;
  type: string;
  region: string;
  availabilityZone: string;
  mac: string;
  localIpv4?: string;
  /** First IPv6 address of the primary interface, when it has one. */
  ipv6?: string;
  /** From EC2 DescribeInstances; absent when the InstanceIdNodeName feature skips the lookup. */
  privateDnsName?: string;
  architecture?: string;
}

export interface InstanceTypeFacts {
  /** Maximum ENIs (default network card) for this instance type; undefined when unknown. */
  defaultEnis?: number;
  ipv4PerEni?: number;
  /** Where this came from: the embedded table, EC2 DescribeInstanceTypes, or nothing. */
  origin: "table" | "ec2" | "unknown";
}

export interface NodeFacts {
  instance: InstanceFacts;
  instanceType: InstanceTypeFacts;
  /** Number of online CPUs (sysfs `devices/system/cpu/online`). */
  cpus: number;
  /** kubelet version without the leading `v`, e.g. `1.35.0` or `1.35.0-eks-5e0fdde`. */
  kubeletVersion: string;
  /** containerd version without the leading `v`, e.g. `1.7.27` or `2.0.5`. */
  containerdVersion: string;
  /** `/usr/bin/nvidia-container-runtime` exists on the node. */
  nvidiaRuntime: boolean;
  /** Neuron devices are present (renders the neuron runtime). */
  neuronDevices: boolean;
  /**
   * An NVIDIA PCI device is attached (some `/sys/bus/pci/devices/<dev>/vendor`
   * reads `0x10de`); kubelet >= 1.35 labels the node `nvidia.com/gpu.present=true`.
   */
  nvidiaGpu: boolean;
  /**
   * The node's memory in bytes, as nodeadm measures it for FastImagePull:
   * online sysfs memory blocks (`/sys/devices/system/memory`), else
   * `/proc/meminfo` MemTotal, else (only when the root is the host) os.totalmem().
   */
  memoryBytes: number;
  /** EC2 instance-store NVMe disks (src/facts/disks.ts); absent or empty: none. */
  instanceStoreDisks?: InstanceStoreDisk[];
  /** Outposts: the API server's addresses and /etc/hosts (src/facts/dns.ts); absent unless cluster.enableOutpost. */
  outpost?: OutpostFacts;
}

/** The smallest IMDS surface berth needs; one real implementation (IMDSv2 over HTTP). */
export interface ImdsClient {
  /**
   * GET a metadata path relative to `/latest/`, e.g. `meta-data/instance-id`,
   * `user-data`, `dynamic/instance-identity/document`. Resolves undefined on 404.
   */
  get(path: string): Promise<string | undefined>;
  getBytes(path: string): Promise<Uint8Array | undefined>;
}

/** The two EC2 lookups berth makes; one real implementation (EC2 Query API, src/facts/ec2.ts). */
export interface Ec2Client {
  /** This instance's private DNS name; waits (with a deadline) until EC2 reports a non-empty one. */
  privateDnsName(instanceId: string): Promise<string>;
  /** The default network card's ENI limit and IPv4 addresses per ENI; undefined when EC2 does not know the type. */
  instanceTypeInfo(type: string): Promise<{ defaultEnis: number; ipv4PerEni: number } | undefined>;
}
