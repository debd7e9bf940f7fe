// A remote worker of After in Node.js (20+), with nothing but the built-in fetch.
// It speaks docs/worker-protocol.md: connect, long-poll, accept, heartbeat, finish, disconnect.
//
//   AFTER_URL=http://127.0.0.1:5985 AFTER_WORKER=node AFTER_TOKEN=$(after token) [AFTER_CONCURRENCY=4] node examples/node-worker.mjs
//
// Jobs are async functions (ctx, ...arguments) => result; ctx has log(line), progress(done, total),
// kwargs, and signal (an AbortSignal: aborted when the task is canceled).
import { appendFileSync } from "node:fs";
import { hostname } from "node:os";

const { AFTER_URL, AFTER_WORKER, AFTER_TOKEN, AFTER_CONCURRENCY = "4" } = process.env;
const base = `${AFTER_URL}/workers/${encodeURIComponent(AFTER_WORKER)}`;
const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); reject(new Error("canceled")); });
});

const jobs = {
  add: async (ctx, a, b) => a + b,
  echo: async (ctx, ...args) => args,
  append: async (ctx, path, line) => { appendFileSync(path, `${line}\n`); return line; },
  sleep: async (ctx, seconds) => { ctx.log(`sleeping ${seconds}s`); await sleep(seconds * 1000, ctx.signal); return seconds; },
  fail: async (ctx, path, message) => { appendFileSync(path, "failed\n"); throw new Error(message); },
};

class Refused extends Error {} // a 4xx: retrying cannot help
class Stale extends Refused {} // 409: the task is no longer ours: drop it
class Gone extends Refused {} // 404 session_gone: connect again

// One call; network errors and 5xx are retried with backoff, a 4xx is thrown.
async function call(path, body, signal) {
  for (let delay = 100; ; delay = Math.min(2 * delay, 5000)) {
    try {
      const res = await fetch(base + path, {
        method: "POST", body: JSON.stringify(body), signal,
        headers: { authorization: `Bearer ${AFTER_TOKEN}`, "content-type": "application/json" },
      });
      const answer = await res.json();
      if (res.ok) return answer;
      if (res.status === 409) throw new Stale(answer.message);
      if (res.status === 404 && answer.error === "session_gone") throw new Gone(answer.message);
      if (res.status < 500) throw new Refused(`${path}: ${res.status} ${answer.message}`);
    } catch (err) {
      if (err instanceof Refused || signal?.aborted) throw err;
      console.error(`${path}: ${err.message}; retrying`);
    }
    await sleep(delay);
  }
}

let session, heartbeat, stopping = false;
const running = new Map(); // task id -> { abort, dropped, done }
const polling = new AbortController();

async function run(task) {
  const path = `/tasks/${encodeURIComponent(task.id)}`, lease = task.lease, abort = new AbortController();
  const me = { abort, dropped: false };
  let lines = [], progress;
  const report = () => { const r = { lease, log: lines, ...(progress && { progress }) }; lines = []; progress = undefined; return r; };
  const ctx = { signal: abort.signal, kwargs: task.job.kwargs, log: (line) => lines.push(String(line)), progress: (done, total) => { progress = { done, total }; } };
  running.set(task.id, me);
  try {
    await call(`${path}/accept`, { lease }); // never run a task before After records it as ours
    await sleep(task.start_in * 1000); // claimed ahead of its time: start on time
    const beat = setInterval(() => call(`${path}/heartbeat`, report())
      .then((a) => a.cancel && abort.abort())
      .catch((err) => { if (err instanceof Stale) { me.dropped = true; abort.abort(); } }), heartbeat * 1000);
    let end;
    try {
      end = { status: "done", result: (await jobs[task.job.name](ctx, ...task.job.arguments)) ?? null };
    } catch (err) {
      end = abort.signal.aborted ? { status: "canceled" } : { status: "failed", error: { message: err.message, type: err.name, traceback: err.stack } };
    } finally { clearInterval(beat); }
    if (!me.dropped) await call(`${path}/finish`, { ...report(), ...end });
  } catch (err) {
    console.error(`${task.id}: ${err.message}${err instanceof Stale ? " (dropped)" : ""}`);
  } finally { running.delete(task.id); }
}

async function connect() {
  const body = { concurrency: Number(AFTER_CONCURRENCY), host: hostname(), jobs: Object.keys(jobs), pid: process.pid, client: "node-worker.mjs" };
  ({ session, heartbeat } = await call("/connect", body));
  console.log(`connected as ${AFTER_WORKER} (session ${session})`);
}

// SIGTERM: stop polling, let the running jobs finish, disconnect.
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => { stopping = true; polling.abort(); });
await connect();
while (!stopping) {
  let answer;
  try {
    answer = await call("/poll", { session, wait: 20 }, polling.signal);
  } catch (err) {
    if (stopping) break;
    if (!(err instanceof Gone)) throw err;
    console.error(`session gone (${err.message}): dropping its tasks, connecting again`);
    for (const r of running.values()) { r.dropped = true; r.abort.abort(); }
    await connect();
    continue;
  }
  for (const id of answer.cancel) running.get(id)?.abort.abort();
  for (const task of answer.tasks) {
    if (running.has(task.id)) continue; // delivered again: the same task
    if (task.job.name in jobs) run(task);
    else call(`/tasks/${encodeURIComponent(task.id)}/finish`, { lease: task.lease, status: "discarded", error: { message: `no job ${task.job.name}` } }).catch(() => {});
  }
  if (answer.stopping) await sleep(heartbeat * 1000); // the daemon stops: try again later
}
while (running.size) await sleep(100);
await call("/disconnect", { session }).catch(() => {});
console.log("disconnected");
