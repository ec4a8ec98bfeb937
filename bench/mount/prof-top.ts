/**
 * Where a profiled thread's time went: self time per function from a V8 .cpuprofile (as written by
 * `node --cpu-prof`, one file per thread), largest first.
 *   node --import tsx bench/mount/prof-top.ts FILE.cpuprofile [TOP]
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const [file, topArg] = process.argv.slice(2);
if (!file) throw new Error('usage: prof-top.ts FILE.cpuprofile [TOP]');
const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map<string, number>();
let total = 0;
prof.samples.forEach((id, k) => {
  const dt = prof.timeDeltas[k] ?? 0;
  total += dt;
  const f = byId.get(id)!.callFrame;
  const name = `${f.functionName || '(anonymous)'} ${f.url ? `${path.basename(f.url)}:${f.lineNumber + 1}` : ''}`.trim();
  self.set(name, (self.get(name) ?? 0) + dt);
});
const idle = self.get('(idle)') ?? 0;
console.log(`${path.basename(file)}: ${(total / 1e6).toFixed(2)} s sampled, ${((100 * idle) / total).toFixed(1)} % idle; busy time by function:`);
const busy = total - idle;
for (const [name, us] of [...self].filter(([n]) => n !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 15))) {
  console.log(`  ${((100 * us) / busy).toFixed(1).padStart(5)} %  ${(us / 1e3).toFixed(0).padStart(6)} ms  ${name}`);
}
