/**
 * containerd's filter syntax as snapshot List (Walk) uses it: filters are alternatives, each a
 * comma-separated conjunction of `field`, `field==value`, `field!=value` or `field~=regexp`; a field
 * is a dotted path whose parts may be quoted (`labels."containerd.io/snapshot.ref"`), a value bare
 * or quoted. Fields of a snapshot: name, parent, kind, labels.<key>.
 */
import { SnapshotError } from './errors.js';

export interface FilterInfo {
  name: string;
  parent: string;
  kind: string;
  labels: Record<string, string>;
}

interface Clause {
  path: string[];
  op?: '==' | '!=' | '~=';
  value?: string;
}

function unquote(s: string, filter: string): string {
  if (s.startsWith('"')) {
    try {
      return JSON.parse(s) as string;
    } catch {
      throw new SnapshotError('InvalidArgument', `bad quoted string in filter ${filter}`);
    }
  }
  if (s.startsWith('/') && s.endsWith('/') && s.length >= 2) return s.slice(1, -1);
  return s;
}

/** Split `s` on `sep` outside double quotes. */
function splitOutside(s: string, sep: string): string[] {
  const parts: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && quoted) {
      cur += c + (s[++i] ?? '');
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === sep && !quoted) {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  return parts;
}

function parseClause(text: string, filter: string): Clause {
  let quoted = false;
  for (let i = 0; i < text.length - 1; i++) {
    const c = text[i]!;
    if (c === '"') quoted = !quoted;
    const two = text.slice(i, i + 2);
    if (!quoted && (two === '==' || two === '!=' || two === '~=')) {
      return { path: parsePath(text.slice(0, i).trim(), filter), op: two, value: unquote(text.slice(i + 2).trim(), filter) };
    }
  }
  return { path: parsePath(text.trim(), filter) };
}

function parsePath(text: string, filter: string): string[] {
  if (!text) throw new SnapshotError('InvalidArgument', `empty field in filter ${filter}`);
  return splitOutside(text, '.').map((p) => unquote(p.trim(), filter));
}

export type Filter = (info: FilterInfo) => boolean;

export function parseFilters(filters: string[]): Filter {
  const alternatives = filters.filter((f) => f.trim() !== '').map((f) => splitOutside(f, ',').map((c) => parseClause(c, f)));
  if (alternatives.length === 0) return () => true;
  return (info) => alternatives.some((clauses) => clauses.every((c) => matches(c, info)));
}

function fieldOf(path: string[], info: FilterInfo): string | undefined {
  const [head, ...rest] = path;
  if (head === 'labels') return rest.length ? info.labels[rest.join('.')] : undefined;
  if (rest.length) return undefined;
  if (head === 'name') return info.name;
  if (head === 'parent') return info.parent;
  if (head === 'kind') return info.kind;
  return undefined;
}

function matches(c: Clause, info: FilterInfo): boolean {
  const v = fieldOf(c.path, info);
  if (!c.op) return v !== undefined && v !== '';
  if (c.op === '==') return v === c.value;
  if (c.op === '!=') return v !== c.value;
  if (v === undefined) return false;
  try {
    return new RegExp(c.value!).test(v);
  } catch {
    return false;
  }
}
