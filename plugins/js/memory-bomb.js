// Hostile test plugin: onMsg allocates 1 MiB buffers, touching every page and
// keeping them all, until memory runs out. The host's memory cap must stop it.
const hoard = [];
export function onMsg() {
  for (;;) {
    const chunk = new Uint8Array(1 << 20);
    for (let i = 0; i < chunk.length; i += 4096) chunk[i] = 1;
    hoard.push(chunk);
  }
}
