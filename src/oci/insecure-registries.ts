/**
 * The registries reached over plain HTTP by the environment's choice (CLIP_INSECURE_REGISTRIES,
 * comma-separated "host:port" or "host"). Apart from the registry client so that a command can pass
 * them on (to the node's server, whose environment is its own) without loading the client.
 */
export function insecureRegistriesFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.CLIP_INSECURE_REGISTRIES ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}
