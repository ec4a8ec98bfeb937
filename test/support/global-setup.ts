import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Runs once before all tests: make sure the real tools the tests talk to are installed. */
export default function setup(): void {
  const script = fileURLToPath(new URL('../../scripts/install-system-deps.sh', import.meta.url));
  try {
    execFileSync('bash', [script], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch {
    // The script said why on stderr; a stack from here would only bury it.
    console.error('test setup failed: the Debian packages the tests need are not installed (see above); no test ran');
    process.exit(1);
  }
}
