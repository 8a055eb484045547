/**
 * A malformed key is refused before any store access: with the Redis store,
 * Redis MONITOR shows no command touching the gateway's namespace while
 * malformed keys arrive; a well-formed unknown key then does cause a lookup
 * (so the monitor really sees the gateway's commands).
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import {
  proxyRequest,
  randomGigaKey,
  randomRpKey,
  redisStoreYaml,
  sha256,
  sleep,
  waitUntil,
} from "../helpers/keys.js";
import { type NamespaceWatch, uniqueNamespace, watchNamespace } from "../helpers/redis.js";
import { startUpstream, type TestUpstream } from "../helpers/upstream.js";

let upstream: TestUpstream;
let gateway: TestGateway;
let namespace: string;
let redis: Redis;
let watch: NamespaceWatch;
/** Every command Redis ran that names our namespace in its arguments. */

beforeAll(async () => {
  const url = inject("redisUrl");
  namespace = uniqueNamespace("malformed");
  upstream = await startUpstream();
  gateway = await startGateway(`
${redisStoreYaml(url, namespace)}
# Dozens of refused requests from one address on purpose: keep the failed-auth throttle out of the way.
auth: { failed_attempts: { limit: 100000 } }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: { url: "${upstream.url}" }
    auth: { header: x-api-key, query: api_key }
`);
  redis = new Redis(url, { lazyConnect: true });
  await redis.connect();
  watch = await watchNamespace(url, namespace);
});

afterAll(async () => {
  await watch?.stop();
  await gateway?.stop();
  await upstream?.close();
  const keys = await redis.keys(`${namespace}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis?.disconnect();
});

const MALFORMED = [
  `xx_${"a".repeat(64)}`, // wrong prefix
  `RP_${"a".repeat(64)}`, // prefix in the wrong case
  `rp_${"a".repeat(63)}`, // one short
  `rp_${"a".repeat(65)}`, // one long
  `rp_${"g".repeat(64)}`, // not hex
  `rp_${"A".repeat(64)}`, // upper-case hex
  `rp_${"0".repeat(60)}zzzz`, // not hex at the end
  `giga_${"a".repeat(31)}`, // one short
  `giga_${"a".repeat(33)}`, // one long
  `giga_${"a".repeat(31)}_`, // not alphanumeric
  "rp_",
  "giga_",
  "x",
];

describe("malformed keys never reach the store", () => {
  it("sends no store command for malformed keys, and one lookup for a well-formed unknown key", async () => {
    // Let the subscription and startup traffic settle, then prove the monitor sees the namespace.
    await watch.caughtUp();
    await sleep(100);
    const seen = watch.seen;
    seen.length = 0;

    for (const key of MALFORMED) {
      for (const send of [
        () => proxyRequest(gateway.addresses.proxy.port, "/api/x", { key }),
        () => proxyRequest(gateway.addresses.proxy.port, "/api/x", { headers: { "x-api-key": key } }),
        () => proxyRequest(gateway.addresses.proxy.port, `/api/x?api_key=${encodeURIComponent(key)}`),
      ]) {
        const answer = await send();
        expect(answer.status, `${key}: ${answer.text}`).toBe(401);
        expect(JSON.parse(answer.text)).toMatchObject({ error: { code: "UNAUTHORIZED" } });
      }
    }
    // Once the monitor shows a marker sent after the malformed requests, it has seen all they caused.
    await watch.caughtUp();
    expect(seen).toEqual([]);
    expect(upstream.requests).toHaveLength(0);

    // A well-formed unknown key is looked up: the same monitor catches it.
    const unknown = randomRpKey();
    const answer = await proxyRequest(gateway.addresses.proxy.port, "/api/x", { key: unknown });
    expect(answer.status).toBe(403);
    await waitUntil("a lookup of the unknown key's hash", () =>
      seen.some((args) => args.some((arg) => arg === `${namespace}key:${sha256(unknown)}`)),
    );
    const unknownGiga = randomGigaKey();
    expect((await proxyRequest(gateway.addresses.proxy.port, "/api/x", { key: unknownGiga })).status).toBe(
      403,
    );
    await waitUntil("a lookup of the unknown giga key's hash", () =>
      seen.some((args) => args.some((arg) => arg === `${namespace}key:${sha256(unknownGiga)}`)),
    );
    // And no command argument ever carried a key in clear.
    for (const args of seen)
      for (const key of [...MALFORMED.filter((k) => k.length > 8), unknown, unknownGiga]) {
        expect(args.join(" ")).not.toContain(key);
      }
  });
});
