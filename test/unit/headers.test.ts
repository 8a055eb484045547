import type { IncomingHttpHeaders } from "node:http";
import { describe, expect, it } from "vitest";
import { withoutHeader, withoutHopByHop } from "../../src/pipeline/headers.js";

const HOP_BY_HOP = ["connection", "keep-alive", "te"];

describe("withoutHopByHop", () => {
  it("hands back the same object when there is nothing to remove", () => {
    const headers: IncomingHttpHeaders = { host: "gw", accept: "*/*" };
    expect(withoutHopByHop(headers, HOP_BY_HOP)).toBe(headers);
  });

  it("copies the rest, in order, and leaves the original as it was", () => {
    const headers: IncomingHttpHeaders = {
      host: "gw",
      connection: "keep-alive, x-hop",
      "x-hop": "1",
      "keep-alive": "timeout=5",
      accept: "*/*",
    };
    const kept = withoutHopByHop(headers, HOP_BY_HOP);
    expect(kept).not.toBe(headers);
    expect(Object.keys(kept)).toEqual(["host", "accept"]);
    expect(Object.keys(headers)).toHaveLength(5);
  });

  it("spares the names it is told to keep even when Connection names them", () => {
    const headers: IncomingHttpHeaders = { host: "gw", connection: "Host, X-Hop", "x-hop": "1" };
    expect(withoutHopByHop(headers, HOP_BY_HOP, new Set(["host"]))).toEqual({ host: "gw" });
  });

  it("reads Connection: keep-alive as naming no other header", () => {
    const headers: IncomingHttpHeaders = { connection: "keep-alive", "keep-alive": "timeout=5", a: "1" };
    expect(withoutHopByHop(headers, [])).toBe(headers);
  });
});

describe("withoutHeader", () => {
  it("removes one header by copying, and hands back the same object when it is absent", () => {
    const headers: IncomingHttpHeaders = { host: "gw", authorization: "Bearer x", accept: "*/*" };
    expect(withoutHeader(headers, "authorization")).toEqual({ host: "gw", accept: "*/*" });
    expect(headers.authorization).toBe("Bearer x");
    expect(withoutHeader(headers, "x-absent")).toBe(headers);
  });
});
