/**
 * containerd's snapshots API (containerd.services.snapshots.v1.Snapshots, containerd 1.6) as an
 * interface definition written here: the same package, service, message and field names and
 * numbers as containerd's api/services/snapshots/v1/snapshots.proto (a test compares the two), and
 * only what the wire needs (no gogoproto options). Loaded from this text, so the built package
 * needs no .proto file beside it.
 */
import { fromJSON, type Options } from '@grpc/proto-loader';
import { loadPackageDefinition, type GrpcObject, type ServiceDefinition } from '@grpc/grpc-js';
import protobuf from 'protobufjs';

export const SNAPSHOTS_PROTO = `
syntax = "proto3";
package containerd.services.snapshots.v1;

import "google/protobuf/empty.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/timestamp.proto";

service Snapshots {
  rpc Prepare(PrepareSnapshotRequest) returns (PrepareSnapshotResponse);
  rpc View(ViewSnapshotRequest) returns (ViewSnapshotResponse);
  rpc Mounts(MountsRequest) returns (MountsResponse);
  rpc Commit(CommitSnapshotRequest) returns (google.protobuf.Empty);
  rpc Remove(RemoveSnapshotRequest) returns (google.protobuf.Empty);
  rpc Stat(StatSnapshotRequest) returns (StatSnapshotResponse);
  rpc Update(UpdateSnapshotRequest) returns (UpdateSnapshotResponse);
  rpc List(ListSnapshotsRequest) returns (stream ListSnapshotsResponse);
  rpc Usage(UsageRequest) returns (UsageResponse);
  rpc Cleanup(CleanupRequest) returns (google.protobuf.Empty);
}

message PrepareSnapshotRequest { string snapshotter = 1; string key = 2; string parent = 3; map<string, string> labels = 4; }
message PrepareSnapshotResponse { repeated containerd.types.Mount mounts = 1; }
message ViewSnapshotRequest { string snapshotter = 1; string key = 2; string parent = 3; map<string, string> labels = 4; }
message ViewSnapshotResponse { repeated containerd.types.Mount mounts = 1; }
message MountsRequest { string snapshotter = 1; string key = 2; }
message MountsResponse { repeated containerd.types.Mount mounts = 1; }
message RemoveSnapshotRequest { string snapshotter = 1; string key = 2; }
message CommitSnapshotRequest { string snapshotter = 1; string name = 2; string key = 3; map<string, string> labels = 4; }
message StatSnapshotRequest { string snapshotter = 1; string key = 2; }

enum Kind { UNKNOWN = 0; VIEW = 1; ACTIVE = 2; COMMITTED = 3; }

message Info {
  string name = 1;
  string parent = 2;
  Kind kind = 3;
  google.protobuf.Timestamp created_at = 4;
  google.protobuf.Timestamp updated_at = 5;
  map<string, string> labels = 6;
}

message StatSnapshotResponse { Info info = 1; }
message UpdateSnapshotRequest { string snapshotter = 1; Info info = 2; google.protobuf.FieldMask update_mask = 3; }
message UpdateSnapshotResponse { Info info = 1; }
message ListSnapshotsRequest { string snapshotter = 1; repeated string filters = 2; }
message ListSnapshotsResponse { repeated Info info = 1; }
message UsageRequest { string snapshotter = 1; string key = 2; }
message UsageResponse { int64 size = 1; int64 inodes = 2; }
message CleanupRequest { string snapshotter = 1; }
`;

/** containerd.types.Mount (api/types/mount.proto), in its own package as containerd has it. */
export const MOUNT_PROTO = `
syntax = "proto3";
package containerd.types;
message Mount { string type = 1; string source = 2; string target = 3; repeated string options = 4; }
`;

export const LOADER_OPTIONS: Options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

/** The protobufjs root with both files and the Google well-known types they import. */
export function snapshotsRoot(): protobuf.Root {
  const root = new protobuf.Root();
  for (const file of ['google/protobuf/empty.proto', 'google/protobuf/field_mask.proto', 'google/protobuf/timestamp.proto']) {
    const common = protobuf.common.get(file) as protobuf.INamespace | undefined;
    if (!common) throw new Error(`protobufjs lacks ${file}`);
    root.addJSON(common.nested!);
  }
  protobuf.parse(MOUNT_PROTO, root, { keepCase: true });
  protobuf.parse(SNAPSHOTS_PROTO, root, { keepCase: true });
  root.resolveAll();
  return root;
}

export const SERVICE_NAME = 'containerd.services.snapshots.v1.Snapshots';

/** The Snapshots service definition for a grpc-js server. */
export function snapshotsService(): ServiceDefinition {
  const definition = fromJSON(snapshotsRoot().toJSON(), LOADER_OPTIONS);
  const pkg = loadPackageDefinition(definition) as GrpcObject;
  const ctor = ((((pkg.containerd as GrpcObject).services as GrpcObject).snapshots as GrpcObject).v1 as GrpcObject).Snapshots as unknown as { service: ServiceDefinition };
  return ctor.service;
}
