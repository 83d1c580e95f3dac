// Hostile test plugin: onMsg never returns. The host's deadline must
// interrupt it and fail the hook, leaving the node serving.
export function onMsg() {
  let n = 0;
  for (;;) n = (n + 1) | 0;
}
