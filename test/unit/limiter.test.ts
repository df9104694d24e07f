import { Limiter } from "../../lib/engine/limiter";

describe("Limiter", () => {
	it("lets `limit` holders in and queues the rest in order", async () => {
		const l = new Limiter(2);
		const order: string[] = [];
		const r1 = await l.acquire();
		const r2 = await l.acquire();
		const p3 = l.acquire().then((r) => (order.push("3"), r));
		const p4 = l.acquire().then((r) => (order.push("4"), r));
		expect([l.running, l.queued]).toEqual([2, 2]);
		r1();
		r1(); // idempotent
		const r3 = await p3;
		expect(order).toEqual(["3"]);
		r2();
		const r4 = await p4;
		expect(order).toEqual(["3", "4"]);
		r3();
		r4();
		expect([l.running, l.queued]).toEqual([0, 0]);
	});

	it("tryAcquire takes a free slot at once, never one somebody waits for", async () => {
		const l = new Limiter(1);
		const r1 = l.tryAcquire();
		expect(r1).not.toBeNull();
		expect(l.tryAcquire()).toBeNull();
		const p2 = l.acquire(); // waits
		r1!();
		const r2 = await p2;
		expect(l.tryAcquire()).toBeNull();
		r2();
		expect([l.running, l.queued]).toEqual([0, 0]);
		const r3 = l.tryAcquire();
		expect([l.running, l.queued]).toEqual([1, 0]);
		r3!();
		r3!(); // idempotent
		expect([l.running, l.queued]).toEqual([0, 0]);
	});

	it("refuses a limit below 1", () => {
		expect(() => new Limiter(0)).toThrow();
	});
});

describe("Limiter background", () => {
	it("serves every waiter before those that asked in the background, each side in order", async () => {
		const l = new Limiter(1);
		const order: string[] = [];
		const first = await l.acquire();
		const take = (name: string, background: boolean) =>
			l.acquire(background).then((release) => {
				order.push(name);
				release();
			});
		const all = [take("batch-1", true), take("api-1", false), take("batch-2", true), take("api-2", false)];
		expect(l.queued).toBe(4);
		expect(l.tryAcquire()).toBeNull();
		first();
		await Promise.all(all);
		expect(order).toEqual(["api-1", "api-2", "batch-1", "batch-2"]);
	});
});
