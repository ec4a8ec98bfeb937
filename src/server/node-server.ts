/**
 * The node's server: serves every background mount of one cache directory in one process, takes
 * requests on the control socket, and gets its /dev/fuse descriptors from the holder (its parent),
 * which keeps them across the server's death. On start it takes over the mounts the holder
 * already has (a restart or an upgrade) before it takes new requests.
 */
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { resolve } from 'node:path';
import type { Attached, MountOptions } from '../fuse/index.js';
import { abortConnection } from '../fuse/index.js';
import { mountFiles, processStartTime, removePidFile, writePidFile } from '../mount/files.js';
import { processMemory } from '../mount/process-metrics.js';
import { handoffOf, preloadMountCode } from '../mount/open-image.js';
import { readyLine, startMount, type MountConfig, type RunningMount } from '../mount/serve.js';
import { keepStatus, statusOf, type MountStatus } from '../mount/status.js';
import { ClipError, isClipError } from '../util/errors.js';
import { isoTime } from '../util/iso-time.js';
import type { Logger } from '../util/log.js';
import { takeFd } from '../util/pidfd.js';
import { serverFiles, type ServerFiles } from './paths.js';
import { loadInit, saveInit, type AttachOptions, type ClientReply, type ClientRequest, type HeldMount, type ToHolder, type ToServer } from './protocol.js';

/** How long a server without mounts waits for a request before it ends. */
const IDLE_MS = 5000;
/** The same once `clip server stop` asked it to end: at once, yet after the stop's own reply. */
const STOPPED_IDLE_MS = 50;
/** How long a server being replaced lets its requests in flight finish. */
const DRAIN_MS = 2000;

interface Served {
  id: number;
  running: RunningMount;
  startedAt: string;
  /** Settles once the mount is gone and its pid and status files with it. */
  cleaned: Promise<void>;
}

export class NodeServer {
  private readonly mounts = new Map<string, Served>();
  private readonly files: ServerFiles;
  private readonly pendingAttach = new Map<number, (reply: ToServer & { op: 'attached' }) => void>();
  private nextReq = 1;
  private busy = 0;
  private restarts = 0;
  /** Kept running without mounts (`clip server start`), until `clip server stop`. */
  private stay = false;
  /** `clip server stop` asked it to end: it does so as soon as it is idle. */
  private stopAsked = false;
  /** Mount requests under way (their mounts are not in `mounts` yet). */
  private mounting = 0;
  private listener: Server | undefined;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly cacheDir: string,
    private readonly log: Logger,
    private readonly toHolder: (msg: ToHolder) => void,
    /** Resolves once the message has been handed to the holder's channel. */
    private readonly notifyHolder: (msg: ToHolder) => Promise<void> = async (msg) => toHolder(msg),
  ) {
    this.files = serverFiles(cacheDir);
  }

  onHolder(msg: ToServer): void {
    switch (msg.op) {
      case 'start':
        this.restarts = msg.restarts;
        this.stay = msg.stay;
        if (this.stay) this.prepare();
        void this.start(msg.mounts);
        return;
      case 'attached':
        this.pendingAttach.get(msg.req)?.(msg);
        this.pendingAttach.delete(msg.req);
        return;
      case 'stop':
        this.listener?.close();
        rmSync(this.files.socket, { force: true });
        process.exit(0);
    }
  }

  private async start(held: HeldMount[]): Promise<void> {
    const t0 = Date.now();
    await Promise.all(held.map((m) => this.resume(m)));
    if (held.length > 0) this.log.info({ mounts: held.length, ms: Date.now() - t0, restarts: this.restarts }, 'server: took over the mounts');
    rmSync(this.files.socket, { force: true }); // the holder's lock makes this server the only one
    const listener = createServer((sock) => this.onClient(sock));
    this.listener = listener;
    listener.listen(this.files.socket, () => this.log.info({ socket: this.files.socket }, 'server: listening'));
    listener.on('error', (err) => {
      this.log.fatal({ err }, 'server: the control socket failed');
      process.exit(1);
    });
    this.idleCheck();
  }

  private async resume(m: HeldMount): Promise<void> {
    const log = this.log.child({ mountpoint: m.mountpoint });
    try {
      if (!m.init) throw new Error('never served');
      const fd = takeFd(process.ppid, m.fd);
      const attached: Attached = { fd, mountpoint: m.mountpoint, connection: m.connection, major: m.major };
      const running = await startMount(m.config, { logger: log, resume: { attached, init: loadInit(m.init) }, restarts: this.restarts });
      await this.track(m.id, running);
    } catch (err) {
      // What cannot be served again fails its readers now rather than leaving them hanging.
      log.error({ err }, 'server: cannot take the mount over; aborting it');
      await abortConnection(m.connection).catch(() => undefined);
      this.toHolder({ op: 'detach', id: m.id });
    }
  }

  /** Keep a served mount; resolves once its pid file is written (a client may look for it next). */
  private async track(id: number, running: RunningMount): Promise<void> {
    const files = mountFiles(this.cacheDir, running.mountpoint);
    const stopStatus = keepStatus(files, running, (err) => this.log.debug({ err }, 'server: cannot write a status'), this.restarts);
    const pidWritten = writePidFile(files, running.mountpoint).catch((err: unknown) => this.log.warn({ err }, 'server: cannot write the pid file'));
    const cleaned = running.done.then(async () => {
      await pidWritten;
      if (this.mounts.get(running.mountpoint) === served) this.mounts.delete(running.mountpoint);
      this.toHolder({ op: 'detach', id });
      await stopStatus().catch(() => undefined);
      await removePidFile(files).catch(() => undefined);
      this.idleCheck();
    });
    const served: Served = { id, running, startedAt: isoTime(), cleaned };
    this.mounts.set(running.mountpoint, served);
    await pidWritten;
  }

  /**
   * Exit to be replaced: stop taking requests on the socket, give the requests in flight a moment
   * to finish, then go. What is still unanswered the kernel resends to the next server. The exit
   * is a SIGKILL of our own: a reader thread blocked in read(2) on /dev/fuse cannot be stopped, and
   * process.exit() would wait for it forever.
   */
  private async replaceSelf(): Promise<void> {
    this.listener?.close();
    await this.notifyHolder({ op: 'restart' });
    const until = Date.now() + DRAIN_MS;
    while (Date.now() < until && [...this.mounts.values()].some((s) => s.running.mount.server.pending > 0)) {
      await new Promise((r) => setTimeout(r, 10));
    }
    this.log.info({ pending: [...this.mounts.values()].reduce((n, s) => n + s.running.mount.server.pending, 0) }, 'server: exiting to be replaced');
    process.kill(process.pid, 'SIGKILL');
  }

  /**
   * A server kept running is there to make the next mount quick: it loads the code every mount
   * runs (the storage read path, the registry client) now rather than in the first mount's way.
   */
  private prepare(): void {
    const t0 = Date.now();
    preloadMountCode().then(
      () => this.log.info({ ms: Date.now() - t0 }, 'server: kept running; the mount code is loaded'),
      (err: unknown) => this.log.warn({ err }, 'server: cannot load the mount code ahead'),
    );
  }

  /**
   * With no mount left and nothing under way for a while, the server and its holder end (unless it
   * was asked to stay). The wait lets the request that started the server arrive, and spares a
   * restart between two mounts.
   */
  private idleCheck(): void {
    clearTimeout(this.idleTimer);
    if (this.mounts.size > 0 || this.busy > 0 || this.stay) return;
    this.idleTimer = setTimeout(() => {
      if (this.mounts.size === 0 && this.busy === 0 && !this.stay) this.toHolder({ op: 'idle' });
    }, this.stopAsked ? STOPPED_IDLE_MS : IDLE_MS);
  }

  private onClient(sock: Socket): void {
    let text = '';
    sock.on('data', (d: Buffer) => {
      text += d.toString();
      const nl = text.indexOf('\n');
      if (nl < 0) return;
      sock.removeAllListeners('data');
      let req: ClientRequest;
      try {
        req = JSON.parse(text.slice(0, nl)) as ClientRequest;
      } catch {
        sock.end(`${JSON.stringify({ ok: false, message: 'not a request' } satisfies ClientReply)}\n`);
        return;
      }
      this.busy++;
      clearTimeout(this.idleTimer);
      this.handle(req)
        .catch((err: unknown): ClientReply => ({ ok: false, ...(isClipError(err) ? { code: err.code } : {}), message: err instanceof Error ? err.message : String(err) }))
        .then((reply) => {
          this.busy--;
          sock.end(`${JSON.stringify(reply)}\n`);
          this.idleCheck();
        });
    });
    sock.on('error', () => undefined);
  }

  private async handle(req: ClientRequest): Promise<ClientReply> {
    switch (req.op) {
      case 'mount':
        return this.mount(req.config);
      case 'unmount': {
        const served = this.mounts.get(resolve(req.mountpoint));
        if (!served) return { ok: true, op: 'unmount', pid: process.pid, served: false };
        await served.running.mount.unmount(req.timeoutMs !== undefined ? { timeoutMs: req.timeoutMs } : {});
        await served.cleaned;
        return { ok: true, op: 'unmount', pid: process.pid, served: true };
      }
      case 'stay': {
        if (typeof req.stay !== 'boolean') throw new ClipError('EINVAL', 'a stay request needs stay: true or false');
        const was = this.stay;
        this.stay = req.stay;
        // Stopped: it ends as soon as it is idle (idleCheck, run once this request is answered);
        // mounts, and mounts under way, keep it until they are gone.
        this.stopAsked = !req.stay;
        await this.notifyHolder({ op: 'stay', stay: req.stay });
        if (req.stay && !was) this.prepare();
        return { ok: true, op: 'stay', pid: process.pid, holderPid: process.ppid, stay: req.stay, mounts: this.mounts.size + this.mounting };
      }
      case 'restart':
        // Answer first, then go once the holder knows to start the next server at once.
        setTimeout(() => void this.replaceSelf(), 50);
        return { ok: true, op: 'restart', pid: process.pid };
      case 'status': {
        const mounts: MountStatus[] = [];
        for (const s of this.mounts.values()) mounts.push(await statusOf(s.running, s.startedAt, this.restarts));
        const holderPid = process.ppid;
        const memory = processMemory();
        return { ok: true, op: 'status', pid: process.pid, holderPid, restarts: this.restarts, stay: this.stay, rssBytes: memory.rss, memory, mounts };
      }
    }
  }

  private async mount(config: MountConfig): Promise<ClientReply> {
    this.mounting++;
    try {
      return await this.mountNow(config);
    } finally {
      this.mounting--;
    }
  }

  private async mountNow(config: MountConfig): Promise<ClientReply> {
    const mountpoint = resolve(config.mountpoint);
    if (this.mounts.has(mountpoint)) throw new ClipError('EINVAL', `already mounted by clip (server pid ${process.pid}); clip unmount it first`, { object: mountpoint });
    let heldId: number | undefined;
    const log = this.log.child({ mountpoint });
    log.debug('server: mount requested');
    const attachViaHolder = async (target: string, opts: MountOptions): Promise<Attached> => {
      const { logger: _logger, ...options } = opts;
      const req = this.nextReq++;
      const reply = await new Promise<ToServer & { op: 'attached' }>((done) => {
        this.pendingAttach.set(req, done);
        this.toHolder({ op: 'attach', req, mountpoint: target, options: options satisfies AttachOptions, config });
      });
      if (!reply.mount) throw new ClipError((reply.error?.code as ClipError['code'] | undefined) ?? 'EINVAL', reply.error?.message ?? 'mount failed', { object: target });
      heldId = reply.mount.id;
      const fd = takeFd(process.ppid, reply.mount.fd);
      return { fd, mountpoint: reply.mount.mountpoint, connection: reply.mount.connection, major: reply.mount.major };
    };
    let running: RunningMount;
    try {
      running = await startMount(config, { logger: log, attach: attachViaHolder, restarts: this.restarts });
    } catch (err) {
      if (heldId !== undefined) this.toHolder({ op: 'detach', id: heldId });
      throw err;
    }
    // What this server resolved (a kept server resolves images itself) is what the next one takes
    // over from: no registry asked again, and the same manifest even if its tag moved meanwhile.
    const resolved = config.resolved ?? handoffOf(running.image);
    this.toHolder({ op: 'served', id: heldId!, init: saveInit(running.mount.server.init!), ...(resolved ? { resolved } : {}) });
    await this.track(heldId!, running);
    log.info({ image: running.image.index.image.reference, pid: process.pid, start: processStartTime(process.pid) }, 'server: mounted');
    return { ok: true, op: 'mount', pid: process.pid, line: readyLine(running), log: this.files.log };
  }
}
