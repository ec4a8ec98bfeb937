import type { Command } from 'commander';

export function registerServer(program: Command): void {
  const server = program
    .command('server')
    .description("the node's clip server: one process per cache directory serves every background mount");
  server
    .command('start')
    .description("start the node's server (if none runs) and keep it running without mounts, so that mounts need not start one: what a node's boot runs")
    .option('--cache-dir <dir>', 'cache directory the mounts will use')
    .option('--json', 'print JSON for scripts')
    .addHelpText('after', '\nExamples:\n  $ clip server start\n  $ clip server start --cache-dir /var/cache/clip\n')
    .action(async (opts: { cacheDir?: string; json?: boolean }) => (await import('../actions/server.js')).serverStartCommand(opts));
  server
    .command('stop')
    .description('let the server end: at once when it serves no mount, else once its last mount is unmounted (no mount is stopped)')
    .option('--cache-dir <dir>', 'cache directory the mounts were started with')
    .option('--json', 'print JSON for scripts')
    .addHelpText('after', '\nExamples:\n  $ clip server stop\n')
    .action(async (opts: { cacheDir?: string; json?: boolean }) => (await import('../actions/server.js')).serverStopCommand(opts));
  server
    .command('status')
    .description('the server and its holder: pids, restarts, memory, and each mount')
    .option('--cache-dir <dir>', 'cache directory the mounts were started with')
    .option('--json', 'print JSON for scripts')
    .addHelpText('after', '\nExamples:\n  $ clip server status\n  $ clip server status --json\n')
    .action(async (opts: { cacheDir?: string; json?: boolean }) => (await import('../actions/server.js')).serverStatusCommand(opts));
  server
    .command('restart')
    .description('replace the server process (say, with a new build of clip) without unmounting: the mounts are taken over, requests in flight are resent')
    .option('--cache-dir <dir>', 'cache directory the mounts were started with')
    .addHelpText('after', '\nExamples:\n  $ npm install -g clipfs@latest && clip server restart\n')
    .action(async (opts: { cacheDir?: string }) => (await import('../actions/server.js')).serverRestartCommand(opts));
}
