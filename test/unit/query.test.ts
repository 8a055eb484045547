import { describe, expect, it } from "vitest";
import { takeQueryParameter } from "../../src/pipeline/authenticate.js";
import { queryRedactor } from "../../src/pipeline/observe.js";
import { parseQuery } from "../../src/pipeline/query.js";

describe("query parameters", () => {
  it("decodes names and values as servers do", () => {
    expect(parseQuery("?a%5Fb=x+y%21&c&&d=")).toEqual([
      { raw: "a%5Fb=x+y%21", name: "a_b", value: "x y!" },
      { raw: "c", name: "c", value: "" },
      { raw: "", name: "", value: "" },
      { raw: "d=", name: "d", value: "" },
    ]);
  });

  it("takes and redacts the same parameter, however its name is spelled", () => {
    const query = "?page=2&api%5Fkey=s3cr3t";
    expect(takeQueryParameter(query, "api_key")).toEqual({ value: "s3cr3t", rest: "?page=2" });
    expect(queryRedactor(["api_key"])(query)).toBe("?page=2&api%5Fkey=[REDACTED]");
  });
});
