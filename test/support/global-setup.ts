import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Runs once before all tests: make sure the real tools the tests talk to are installed. */
export default function setup(): void {
  const script = fileURLToPath(new URL('../../scripts/install-system-deps.sh', import.meta.url));
  execFileSync('bash', [script], { stdio: ['ignore', 'inherit', 'inherit'] });
}
