// Open-loop load at a fixed rate, for latency percentiles: requests fall due at an even pace
// whether or not earlier ones were answered, and each is timed from the moment it fell due. A
// request that had to wait for a free connection counts that wait, so a slow target cannot hide
// it (no coordinated omission). autocannon's rate option instead gives each connection a quota
// per second, which it sends as fast as it can at the top of the second: a burst at full load.
//
// Usage: node paced.mjs <url> <rate req/s> <seconds> <connections> [header-file]
// The header file holds one Authorization value per line; one is picked at random per request.
// Prints one JSON line: { rps, total, p50, p99, non2xx, errors } (percentiles in milliseconds).
import { readFileSync } from "node:fs";
import { connect } from "node:net";

const [url, rateArg, secondsArg, connectionsArg, headerFile] = process.argv.slice(2);
const rate = Number(rateArg);
const total = Math.round(rate * Number(secondsArg));
const connections = Number(connectionsArg);
if (!(rate > 0 && total > 0 && connections > 0)) {
  process.stderr.write("usage: node paced.mjs <url> <rate> <seconds> <connections> [header-file]\n");
  process.exit(2);
}
const target = new URL(url);
const port = Number(target.port || 80);
const listed = headerFile ? readFileSync(headerFile, "utf8").split("\n").filter(Boolean) : [];
const values = listed.length > 0 ? listed : [""];
const requests = values.map((value) =>
  Buffer.from(
    `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\n` +
      `${value ? `Authorization: ${value}\r\n` : ""}\r\n`,
    "latin1",
  ),
);
const HEADER_END = Buffer.from("\r\n\r\n");
const LAST_CHUNK = Buffer.from("\r\n0\r\n\r\n");

const latencies = new Float64Array(total);
let answered = 0;
let non2xx = 0;
let errors = 0;
let due = 0; // requests that have fallen due so far
const dueAt = new Float64Array(total); // when each fell due (the clock it is timed from)
let nextToSend = 0;
const idle = [];

/** One keep-alive connection carrying one request at a time. */
function open() {
  const conn = { socket: connect(port, target.hostname), pending: Buffer.alloc(0), stamp: 0, busy: false };
  conn.socket.setNoDelay(true);
  conn.socket.on("data", (chunk) => {
    conn.pending = conn.pending.length ? Buffer.concat([conn.pending, chunk]) : chunk;
    const end = responseEnd(conn.pending);
    if (end === -1) return;
    const status = Number(conn.pending.toString("latin1", 9, 12));
    if (status < 200 || status > 299) non2xx++;
    latencies[answered++] = performance.now() - conn.stamp;
    const closing = /\r\nconnection: *close/i.test(conn.pending.toString("latin1", 0, end));
    conn.pending = Buffer.alloc(0);
    conn.busy = false;
    if (closing) replace(conn);
    else idle.push(conn);
    dispatch();
  });
  conn.socket.on("error", () => {});
  conn.socket.on("close", () => {
    if (conn.busy) {
      errors++;
      conn.busy = false;
      replace(conn);
      dispatch();
    }
  });
  return conn;
}

function replace(conn) {
  conn.socket.destroy();
  const index = idle.indexOf(conn);
  if (index !== -1) idle.splice(index, 1);
  if (answered + errors >= total) return;
  const fresh = open();
  fresh.socket.once("connect", () => {
    idle.push(fresh);
    dispatch();
  });
}

/** Where the response at the start of `buf` ends, or -1 while it is incomplete. */
function responseEnd(buf) {
  const headerEnd = buf.indexOf(HEADER_END);
  if (headerEnd === -1) return -1;
  const head = buf.toString("latin1", 0, headerEnd);
  const length = /\r\ncontent-length: *(\d+)/i.exec(head);
  if (length) {
    const end = headerEnd + 4 + Number(length[1]);
    return buf.length >= end ? end : -1;
  }
  if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
    const last = buf.indexOf(LAST_CHUNK, headerEnd + 2);
    return last === -1 ? -1 : last + LAST_CHUNK.length;
  }
  return headerEnd + 4; // no body
}

function dispatch() {
  while (nextToSend < due && idle.length > 0) {
    const conn = idle.pop();
    conn.stamp = dueAt[nextToSend++];
    conn.busy = true;
    conn.socket.write(requests[Math.floor(Math.random() * requests.length)]);
  }
}

// Every connection is open before the clock starts.
await Promise.all(
  Array.from(
    { length: connections },
    () =>
      new Promise((resolve, reject) => {
        const conn = open();
        conn.socket.once("connect", () => {
          idle.push(conn);
          resolve();
        });
        conn.socket.once("error", reject);
      }),
  ),
);

const start = performance.now();
const periodMs = 1000 / rate;
const deadline = start + total * periodMs + 10_000;
await new Promise((resolve) => {
  const tick = setInterval(() => {
    const now = performance.now();
    // A timer tick comes up to a millisecond late: what fell due meanwhile is timed from now, so
    // the generator's own tick granularity is not charged to the target.
    const dueNow = Math.min(total, Math.floor((now - start) / periodMs) + 1);
    for (; due < dueNow; due++) dueAt[due] = now;
    dispatch();
    if (answered + errors >= total || now > deadline) {
      clearInterval(tick);
      resolve();
    }
  }, 1);
});
const elapsedS = (performance.now() - start) / 1000;
errors += total - answered - errors;
for (const conn of idle) conn.socket.destroy();

const sorted = latencies.subarray(0, answered).sort();
const percentile = (p) =>
  answered === 0
    ? null
    : Math.round(sorted[Math.min(answered - 1, Math.floor((p / 100) * answered))] * 1000) / 1000;
process.stdout.write(
  `${JSON.stringify({ rps: Math.round(answered / elapsedS), total, p50: percentile(50), p99: percentile(99), non2xx, errors })}\n`,
);
process.exit(0);
