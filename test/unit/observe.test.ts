import { describe, expect, it } from "vitest";
import { queryRedactor } from "../../src/pipeline/observe.js";

describe("queryRedactor", () => {
  const redact = queryRedactor(["api_key", "token"]);

  it("blanks the value of a listed parameter and keeps the rest verbatim", () => {
    expect(redact("?api_key=s3cr3t&page=2&q=a%20b")).toBe("?api_key=[REDACTED]&page=2&q=a%20b");
  });

  it("blanks every listed parameter and every repetition of one", () => {
    expect(redact("?token=a&api_key=b&x=1&api_key=c")).toBe(
      "?token=[REDACTED]&api_key=[REDACTED]&x=1&api_key=[REDACTED]",
    );
  });

  it("recognizes a percent- or plus-encoded parameter name", () => {
    expect(redact("?api%5Fkey=s3cr3t")).toBe("?api%5Fkey=[REDACTED]");
    expect(redact("?%61pi_key=s3cr3t")).toBe("?%61pi_key=[REDACTED]");
    expect(queryRedactor(["api key"])("?api+key=s3cr3t")).toBe("?api+key=[REDACTED]");
  });

  it("blanks values containing = and a parameter without a value", () => {
    expect(redact("?api_key=a=b==&x")).toBe("?api_key=[REDACTED]&x");
    expect(redact("?api_key")).toBe("?api_key=[REDACTED]");
    expect(redact("?api_key=")).toBe("?api_key=[REDACTED]");
  });

  it("leaves parameters whose names only contain a listed name", () => {
    expect(redact("?api_key2=a&my_api_key=b&token_type=bearer")).toBe(
      "?api_key2=a&my_api_key=b&token_type=bearer",
    );
  });

  it("survives malformed escapes and empty pairs", () => {
    expect(redact("?%zz=1&&api_key=x&")).toBe("?%zz=1&&api_key=[REDACTED]&");
  });

  it("is the identity when nothing is to be redacted", () => {
    const none = queryRedactor([]);
    expect(none("?api_key=s3cr3t")).toBe("?api_key=s3cr3t");
  });
});
