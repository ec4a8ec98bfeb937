import { endianness } from 'node:os';
import { ClipError } from '../util/errors.js';
import type { Platform } from './types.js';

/** Parse "os/arch[/variant]", e.g. "linux/arm64/v8". */
export function parsePlatform(text: string): Platform {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-zA-Z0-9_.-]+$/.test(p))) {
    throw new ClipError('EINVAL', 'invalid platform (expected os/arch[/variant], e.g. linux/amd64)', { object: text });
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return normalizePlatform({ os: os.toLowerCase(), architecture: architecture.toLowerCase(), ...(variant ? { variant: variant.toLowerCase() } : {}) });
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

const NODE_ARCH: Record<string, string> = {
  x64: 'amd64',
  ia32: '386',
  arm: 'arm',
  arm64: 'arm64',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mips: 'mips',
  mipsel: 'mipsle',
  ppc: 'ppc',
};

/** The platform of this machine in OCI names (node's "x64" is "amd64", and so on). */
export function hostPlatform(): Platform {
  const os = process.platform === 'win32' ? 'windows' : process.platform;
  let architecture = NODE_ARCH[process.arch] ?? process.arch;
  if (process.arch === 'ppc64') architecture = endianness() === 'LE' ? 'ppc64le' : 'ppc64';
  let variant: string | undefined;
  if (process.arch === 'arm') {
    const v = (process.config.variables as Record<string, unknown>).arm_version;
    variant = `v${typeof v === 'string' || typeof v === 'number' ? v : '7'}`;
  }
  return normalizePlatform({ os, architecture, ...(variant ? { variant } : {}) });
}

/** containerd's normalisation: synonyms of architectures, and arm64's default variant v8 dropped. */
export function normalizePlatform(p: Platform): Platform {
  let { architecture, variant } = p;
  if (architecture === 'x86_64' || architecture === 'x86-64') architecture = 'amd64';
  if (architecture === 'aarch64') architecture = 'arm64';
  if (architecture === 'i386') architecture = '386';
  if (architecture === 'arm64' && variant === 'v8') variant = undefined;
  if (architecture === 'amd64' && variant === 'v1') variant = undefined;
  const out: Platform = { ...p, architecture };
  if (variant) out.variant = variant;
  else delete out.variant;
  return out;
}

/** Whether a candidate serves the wanted platform; a wanted platform without variant takes any variant. */
export function platformMatches(candidate: Platform, wanted: Platform): boolean {
  const c = normalizePlatform(candidate);
  const w = normalizePlatform(wanted);
  if (c.os !== w.os || c.architecture !== w.architecture) return false;
  return w.variant === undefined || c.variant === w.variant;
}

/** Pick the best entry for `wanted`: an exact variant match first, then any compatible one. */
export function selectPlatform<T extends { platform?: Platform }>(entries: T[], wanted: Platform): T | undefined {
  const matching = entries.filter((e) => e.platform && platformMatches(e.platform, wanted));
  const w = normalizePlatform(wanted);
  return matching.find((e) => normalizePlatform(e.platform!).variant === w.variant) ?? matching[0];
}
