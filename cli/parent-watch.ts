/**
 * Preloaded (`node --import`) into every process the embedded stack spawns: when the process
 * that started it dies, even by SIGKILL, the child is re-parented and stops itself with SIGTERM,
 * so a crashed `ferry up` or test run leaves no actors behind. Linux offers no portable
 * parent-death signal to Node, hence the poll.
 */
const expectedParent = Number(process.env.FERRY_PARENT_PID);

if (Number.isInteger(expectedParent) && expectedParent > 0) {
  let signalled = false;
  const timer = setInterval(() => {
    if (process.ppid !== expectedParent && !signalled) {
      signalled = true;
      process.kill(process.pid, "SIGTERM");
    }
  }, 1_000);
  timer.unref();
}

export {};
