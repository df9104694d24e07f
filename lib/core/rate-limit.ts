/**
 * Token buckets per key (a token, an address), pure: time is a parameter. A bucket holds at most
 * `burst` requests and refills at `perSecond`; a request takes one, or is refused with the time
 * until one is back. Memory is bounded: at most `maxKeys` buckets, the least recently used dropped
 * first (a dropped bucket comes back full, which errs on the side of the client, and an attacker
 * cycling through more keys than that gains at most one burst per key).
 */
export interface RateLimit {
	/** Requests a second, sustained (0: no limit). */
	perSecond: number;
	/** Requests at once. */
	burst: number;
}

export type Take = { ok: true } | { ok: false; retryAfterMs: number };

export class RateLimiter {
	/** key -> [tokens, at]; a Map keeps insertion order, re-inserted on use: least recent first. */
	private readonly buckets = new Map<string, [number, number]>();

	constructor(
		readonly limit: RateLimit,
		private readonly maxKeys = 10_000,
	) {}

	/** Take one request for `key` at `now` (ms). */
	take(key: string, now: number): Take {
		if (this.limit.perSecond <= 0) return { ok: true };
		const { perSecond, burst } = this.limit;
		const prev = this.buckets.get(key);
		let tokens = prev ? Math.min(burst, prev[0] + ((now - prev[1]) / 1000) * perSecond) : burst;
		this.buckets.delete(key);
		if (tokens >= 1) {
			tokens -= 1;
			this.buckets.set(key, [tokens, now]);
			this.trim();
			return { ok: true };
		}
		this.buckets.set(key, [tokens, now]);
		return { ok: false, retryAfterMs: Math.ceil(((1 - tokens) / perSecond) * 1000) };
	}

	/** Whether `key` has a request left now, without taking it. */
	allows(key: string, now: number): Take {
		if (this.limit.perSecond <= 0) return { ok: true };
		const prev = this.buckets.get(key);
		if (!prev) return { ok: true };
		const tokens = Math.min(this.limit.burst, prev[0] + ((now - prev[1]) / 1000) * this.limit.perSecond);
		return tokens >= 1 ? { ok: true } : { ok: false, retryAfterMs: Math.ceil(((1 - tokens) / this.limit.perSecond) * 1000) };
	}

	get size(): number {
		return this.buckets.size;
	}

	private trim(): void {
		while (this.buckets.size > this.maxKeys) {
			const oldest = this.buckets.keys().next().value as string;
			this.buckets.delete(oldest);
		}
	}
}
