import { describe, expect, it } from "vitest";
import { CircuitBreaker } from "../../src/store/breaker.js";
import { StoreUnavailableError } from "../../src/store/key-store.js";

describe("CircuitBreaker", () => {
  const failing = () => Promise.reject(new StoreUnavailableError("down"));

  it("opens after consecutive failures and then fails fast without calling the store", async () => {
    let now = 0;
    const breaker = new CircuitBreaker({ failures: 3, cooldownMs: 1000, now: () => now });
    for (let i = 0; i < 3; i++) await expect(breaker.run(failing)).rejects.toThrow("down");
    expect(breaker.current).toBe("open");
    let called = 0;
    await expect(
      breaker.run(async () => {
        called++;
        return 1;
      }),
    ).rejects.toThrow(/circuit open/);
    expect(called).toBe(0);
    now = 999;
    await expect(breaker.run(async () => 1)).rejects.toThrow(/circuit open/);
  });

  it("lets one probe through after the cooldown; success closes it, failure reopens it", async () => {
    let now = 0;
    const breaker = new CircuitBreaker({ failures: 1, cooldownMs: 1000, now: () => now });
    await expect(breaker.run(failing)).rejects.toThrow();
    now = 1000;
    await expect(breaker.run(failing)).rejects.toThrow("down");
    expect(breaker.current).toBe("open");
    await expect(breaker.run(async () => 1)).rejects.toThrow(/circuit open/);
    now = 2000;
    await expect(breaker.run(async () => 42)).resolves.toBe(42);
    expect(breaker.current).toBe("closed");
  });

  it("a success resets the failure count", async () => {
    const breaker = new CircuitBreaker({ failures: 2, cooldownMs: 1000, now: () => 0 });
    await expect(breaker.run(failing)).rejects.toThrow();
    await breaker.run(async () => 1);
    await expect(breaker.run(failing)).rejects.toThrow();
    expect(breaker.current).toBe("closed");
  });
});
