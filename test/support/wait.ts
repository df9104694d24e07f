/** Wait on a condition with a deadline (never a fixed sleep). Used by the tests and the benchmarks. */
export async function waitFor<T>(cond: () => T | Promise<T>, timeoutMs = 10_000, what = "condition", intervalMs = 20): Promise<NonNullable<T>> {
	const deadline = Date.now() + timeoutMs;
	let last: unknown;
	for (;;) {
		try {
			const v = await cond();
			if (v) return v;
		} catch (err) {
			last = err;
		}
		if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
		await new Promise((r) => setTimeout(r, intervalMs));
	}
}
