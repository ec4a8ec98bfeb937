/** A FUSE server in TypeScript over /dev/fuse: no libfuse, no native code. */
export { Errno, FuseErrno, errnoName, toErrno, type ErrnoName } from './errno.js';
export { abortConnection, attach, cleanStaleMount, type AttachOptions, type Attached } from './attach.js';
export { Mount, mount, serveAttached, type MountOptions, type UnmountOptions } from './mount.js';
export { cancelPrestartedReaders, DEFAULT_MAX_READER_THREADS, FuseServer, holdReaderGrowth, prestartReaders, readerPolicy, type FuseServerOptions, type InitInfo } from './server.js';
export { InitFlag, Opcode, SEEK_DATA, SEEK_HOLE, initFlagNames, opcodeName } from './protocol.js';
export * from './types.js';
export { answerSync, type FileRange, type SyncAnswerOptions, type SyncFilesystem, type SyncReply, type ThreadAnswers } from './sync-answers.js';
