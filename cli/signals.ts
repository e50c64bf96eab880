/**
 * Runs `onStop` once on the first SIGINT, SIGTERM or SIGHUP (the stack is stopped in order there);
 * a second signal exits at once, and the exit handler kills whatever is left.
 */
export function onTerminationSignal(onStop: (signal: NodeJS.Signals) => void | Promise<void>): () => void {
  let received = false;
  const handler = (signal: NodeJS.Signals) => {
    if (received) {
      process.stderr.write(`ferry: ${signal} again; exiting now\n`);
      process.exit(130);
    }
    received = true;
    void onStop(signal);
  };
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const signal of signals) process.on(signal, handler);
  return () => {
    for (const signal of signals) process.off(signal, handler);
  };
}
