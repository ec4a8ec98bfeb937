import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * Node flags for a child running `module` from "/": ours (with module flags made absolute, since a
 * bare `--import tsx` would resolve from the child's cwd), plus tsx when the module is TypeScript.
 */
export function nodeArgs(module: string): string[] {
  const args: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const joined = /^--(import|loader|experimental-loader|require)=(.*)$/.exec(arg);
    if (joined) args.push(`--${joined[1]}=${absoluteSpecifier(joined[2]!)}`);
    else if (/^--(import|loader|experimental-loader|require|r)$/.test(arg) && i + 1 < argv.length) args.push(arg, absoluteSpecifier(argv[++i]!));
    else args.push(arg);
  }
  if (module.endsWith('.ts') && !args.some((a) => a.includes('tsx'))) args.push('--import', absoluteSpecifier('tsx'));
  return args;
}

function absoluteSpecifier(spec: string): string {
  if (spec.startsWith('.')) return pathToFileURL(resolve(spec)).href;
  if (spec.startsWith('/') || /^[a-z]+:/.test(spec)) return spec;
  try {
    return import.meta.resolve(spec);
  } catch {
    return spec;
  }
}

