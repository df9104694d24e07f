import { RateLimiter } from "../../lib/core/rate-limit";

describe("RateLimiter (token buckets, time as a parameter)", () => {
	test("a burst, then the sustained rate; the refusal says when the next request is back", () => {
		const l = new RateLimiter({ perSecond: 2, burst: 3 });
		expect([0, 0, 0].map(() => l.take("a", 0).ok)).toEqual([true, true, true]);
		expect(l.take("a", 0)).toEqual({ ok: false, retryAfterMs: 500 });
		expect(l.take("a", 250)).toEqual({ ok: false, retryAfterMs: 250 });
		expect(l.take("a", 500).ok).toBe(true);
		expect(l.take("a", 500).ok).toBe(false);
		// Full again after 1.5 s idle, never above the burst.
		expect([0, 0, 0, 0].map(() => l.take("a", 10_000).ok)).toEqual([true, true, true, false]);
	});

	test("keys are independent; allows() does not take", () => {
		const l = new RateLimiter({ perSecond: 1, burst: 1 });
		expect(l.take("a", 0).ok).toBe(true);
		expect(l.allows("a", 0).ok).toBe(false);
		expect(l.allows("b", 0).ok).toBe(true);
		expect(l.allows("b", 0).ok).toBe(true);
		expect(l.take("b", 0).ok).toBe(true);
	});

	test("rate 0 is no limit; memory stays bounded by maxKeys, least recently used dropped", () => {
		const off = new RateLimiter({ perSecond: 0, burst: 0 });
		for (let i = 0; i < 100; i++) expect(off.take("a", 0).ok).toBe(true);
		const l = new RateLimiter({ perSecond: 1, burst: 1 }, 3);
		for (const k of ["a", "b", "c", "d"]) l.take(k, 0);
		expect(l.size).toBe(3);
		expect(l.take("a", 0).ok).toBe(true); // dropped, so back full
		expect(l.take("d", 0).ok).toBe(false);
	});
});
