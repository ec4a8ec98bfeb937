/**
 * The snapshotter's hand-written snapshots API against containerd's own definition (Debian's
 * golang-github-containerd-containerd-dev, containerd 1.6): the same service and methods (paths,
 * streaming, message types), and every message the service uses with the same fields (names,
 * numbers, types, labels), enums with the same values.
 */
import { existsSync } from 'node:fs';
import { fromJSON, loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import { LOADER_OPTIONS, SERVICE_NAME, snapshotsRoot } from '../../src/snapshotter/proto.js';

const GOCODE = '/usr/share/gocode/src';
const CONTAINERD_PROTO = 'github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto';

interface Field { name: string; number: number; type: string; label: string; typeName: string }
interface MessageType { type: { field?: Field[]; value?: { name: string; number: number }[]; name: string } }
interface Method { path: string; requestStream: boolean; responseStream: boolean; requestType: MessageType; responseType: MessageType }

function shape(def: PackageDefinition): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, entry] of Object.entries(def)) {
    if (!name.startsWith('containerd.')) continue;
    if (name === SERVICE_NAME) {
      out[name] = Object.fromEntries(Object.entries(entry as unknown as Record<string, Method>).map(([m, d]) => [m, {
        path: d.path, requestStream: d.requestStream, responseStream: d.responseStream,
        request: d.requestType.type.name, response: d.responseType.type.name,
      }]));
      continue;
    }
    const t = (entry as unknown as MessageType).type;
    out[name] = t.field
      ? t.field.map((f) => ({ name: f.name, number: f.number, type: f.type, label: f.label, typeName: f.typeName.replace(/^\./, '') }))
      : t.value?.map((v) => ({ name: v.name, number: v.number }));
  }
  return out;
}

describe('the snapshots API definition', () => {
  it('matches containerd 1.6\'s snapshots.proto', () => {
    expect(existsSync(`${GOCODE}/${CONTAINERD_PROTO}`), 'install golang-github-containerd-containerd-dev (scripts/install-system-deps.sh)').toBe(true);
    const theirs = loadSync(CONTAINERD_PROTO, { ...LOADER_OPTIONS, includeDirs: [GOCODE, `${GOCODE}/github.com/gogo/protobuf`] });
    const ours = fromJSON(snapshotsRoot().toJSON(), LOADER_OPTIONS);
    const t = shape(theirs);
    const o = shape(ours);
    expect(Object.keys(o).sort()).toEqual(Object.keys(t).sort());
    expect(o).toEqual(t);
    expect(Object.keys(t[SERVICE_NAME] as object)).toHaveLength(10);
  });
});
