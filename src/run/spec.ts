/**
 * The OCI runtime config (config.json) of a container, with Docker's defaults: namespaces (pid,
 * ipc, uts, mount, and network unless --network host), its default mounts (/proc, /dev, /dev/pts,
 * /dev/shm, /dev/mqueue, /sys read-only, cgroups read-only), its default capabilities (effective
 * for root only), masked and read-only /proc paths, and /etc/hosts, /etc/hostname and
 * /etc/resolv.conf bound from files clip writes. No seccomp or AppArmor profile is applied.
 */
import type { ProcessSettings } from './image-config.js';

export type NetworkMode = 'host' | 'none';

export interface Volume {
  /** Absolute host path (resolved). */
  source: string;
  /** Absolute path in the container. */
  destination: string;
  readOnly: boolean;
}

export interface SpecOptions {
  id: string;
  /** root.path: absolute, or relative to the bundle ("rootfs"). */
  rootPath: string;
  readOnly?: boolean;
  process: ProcessSettings;
  hostname: string;
  network: NetworkMode;
  tty: boolean;
  /** The terminal's size, set on the container's console before its process starts (runc resizes it only after). */
  consoleSize?: { height: number; width: number };
  volumes: Volume[];
  /** Files bound onto /etc/hosts, /etc/hostname, /etc/resolv.conf. */
  etcFiles: { hosts: string; hostname: string; resolvConf: string };
  annotations?: Record<string, string>;
}

/** Docker's default capability set. */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

const MASKED_PATHS = [
  '/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats',
  '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

export function runtimeSpec(o: SpecOptions): Record<string, unknown> {
  const root = o.process.user.uid === 0;
  const caps = root ? DEFAULT_CAPABILITIES : [];
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/etc/resolv.conf', type: 'bind', source: o.etcFiles.resolvConf, options: ['rbind', 'rprivate', 'ro'] },
    { destination: '/etc/hostname', type: 'bind', source: o.etcFiles.hostname, options: ['rbind', 'rprivate', 'ro'] },
    { destination: '/etc/hosts', type: 'bind', source: o.etcFiles.hosts, options: ['rbind', 'rprivate', 'ro'] },
    ...o.volumes.map((v) => ({ destination: v.destination, type: 'bind', source: v.source, options: ['rbind', 'rprivate', v.readOnly ? 'ro' : 'rw'] })),
  ];
  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, ...(o.network === 'host' ? [] : [{ type: 'network' }])];
  const { user } = o.process;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: o.tty,
      ...(o.tty && o.consoleSize ? { consoleSize: o.consoleSize } : {}),
      user: { uid: user.uid, gid: user.gid, ...(user.additionalGids.length > 0 ? { additionalGids: user.additionalGids } : {}) },
      args: o.process.args,
      env: o.process.env,
      cwd: o.process.cwd,
      capabilities: { bounding: DEFAULT_CAPABILITIES, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      noNewPrivileges: false,
    },
    root: { path: o.rootPath, readonly: o.readOnly === true },
    // With host networking the UTS namespace is still the container's: the host's name is set in it.
    hostname: o.hostname,
    mounts,
    ...(o.annotations ? { annotations: o.annotations } : {}),
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      cgroupsPath: `/clip/${o.id}`,
      namespaces,
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
    },
  };
}
