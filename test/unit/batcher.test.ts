import { Batcher, batchLength } from "../../lib/engine/batcher";

const schedule = (fn: () => void) => void setImmediate(fn);

describe("Batcher", () => {
	it("coalesces calls of one turn into one batch and answers each caller", async () => {
		const calls: number[][] = [];
		const b = new Batcher<number, number>(
			async (items) => {
				calls.push(items);
				return items.map((x) => x * 2);
			},
			{ schedule },
		);
		const out = await Promise.all([1, 2, 3].map((x) => b.add(x)));
		expect(out).toEqual([2, 4, 6]);
		expect(calls).toEqual([[1, 2, 3]]);
		expect(await b.add(5)).toBe(10);
		expect(calls).toEqual([[1, 2, 3], [5]]);
	});

	it("splits at maxBatch", async () => {
		const calls: number[][] = [];
		const b = new Batcher<number, number>(async (items) => (calls.push(items), items), { maxBatch: 2, schedule });
		await Promise.all([1, 2, 3, 4, 5].map((x) => b.add(x)));
		expect(calls).toEqual([[1, 2], [3, 4], [5]]);
	});

	it("closes a batch at maxWeight; an item heavier than the bound goes alone", async () => {
		const calls: number[][] = [];
		const b = new Batcher<number, number>(async (items) => (calls.push(items), items), { maxWeight: 10, weigh: (x) => x, schedule });
		await Promise.all([4, 4, 4, 12, 1, 9, 3].map((x) => b.add(x)));
		expect(calls).toEqual([[4, 4], [4], [12], [1, 9], [3]]);
	});

	it.each([
		{ items: [], bounds: {}, n: 0 },
		{ items: [1, 2, 3], bounds: { maxBatch: 2 }, n: 2 },
		{ items: [5, 5, 5], bounds: { maxWeight: 10, weigh: (x: number) => x }, n: 2 },
		{ items: [11, 1], bounds: { maxWeight: 10, weigh: (x: number) => x }, n: 1 },
		{ items: [1, 1, 1], bounds: { maxBatch: 2, maxWeight: 10, weigh: (x: number) => x }, n: 2 },
	])("batchLength($items, $bounds) = $n", ({ items, bounds, n }) => {
		expect(batchLength(items, bounds)).toBe(n);
	});

	it("rejects every caller of a failed batch, and a wrong-length answer", async () => {
		const failing = new Batcher<number, number>(
			async () => {
				throw new Error("db down");
			},
			{ schedule },
		);
		await expect(Promise.all([failing.add(1), failing.add(2)])).rejects.toThrow("db down");
		const short = new Batcher<number, number>(async () => [1], { schedule });
		await expect(Promise.all([short.add(1), short.add(2)])).rejects.toThrow(/1 results for 2/);
	});
});

describe("Batcher group commit", () => {
	it("keeps one batch in flight: what arrives meanwhile goes as one batch when it ends", async () => {
		const calls: number[][] = [];
		let release: (() => void) | null = null;
		const b = new Batcher<number, number>(
			async (items) => {
				calls.push(items);
				if (calls.length === 1) await new Promise<void>((r) => (release = r));
				return items;
			},
			{ schedule },
		);
		const first = b.add(1);
		await new Promise((r) => setImmediate(r));
		expect(calls).toEqual([[1]]);
		// Four more turns while the first batch is in flight: no new batch yet.
		const rest: Promise<number>[] = [];
		for (const x of [2, 3, 4, 5]) {
			rest.push(b.add(x));
			await new Promise((r) => setImmediate(r));
		}
		expect(calls).toEqual([[1]]);
		release!();
		expect(await Promise.all([first, ...rest])).toEqual([1, 2, 3, 4, 5]);
		expect(calls).toEqual([[1], [2, 3, 4, 5]]);
	});

	it("a failed batch does not stall the next one", async () => {
		let n = 0;
		const b = new Batcher<number, number>(
			async (items) => {
				if (++n === 1) throw new Error("db down");
				return items;
			},
			{ schedule },
		);
		await expect(b.add(1)).rejects.toThrow("db down");
		expect(await b.add(2)).toBe(2);
	});
});
