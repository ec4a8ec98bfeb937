/** Errors the snapshots API answers with: each maps to the gRPC code containerd's errdefs reads back. */
import { status } from '@grpc/grpc-js';

export type SnapshotErrorKind = 'NotFound' | 'AlreadyExists' | 'FailedPrecondition' | 'InvalidArgument' | 'Unavailable' | 'Unknown';

const CODES: Record<SnapshotErrorKind, status> = {
  NotFound: status.NOT_FOUND,
  AlreadyExists: status.ALREADY_EXISTS,
  FailedPrecondition: status.FAILED_PRECONDITION,
  InvalidArgument: status.INVALID_ARGUMENT,
  Unavailable: status.UNAVAILABLE,
  Unknown: status.UNKNOWN,
};

export class SnapshotError extends Error {
  constructor(readonly kind: SnapshotErrorKind, message: string) {
    super(message);
    this.name = 'SnapshotError';
  }

  get grpcCode(): status {
    return CODES[this.kind];
  }
}

export const notFound = (what: string): SnapshotError => new SnapshotError('NotFound', `snapshot ${what}: not found`);
export const alreadyExists = (what: string): SnapshotError => new SnapshotError('AlreadyExists', `snapshot ${what}: already exists`);
