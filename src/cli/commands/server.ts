import type { Command } from 'commander';

export function registerServer(program: Command): void {
  const server = program
    .command('server')
    .description("the node's clip server: one process per cache directory serves every background mount");
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
