import { FakeClock } from "../support/fake-clock";

describe("FakeClock", () => {
	test("runs due timers in order of due time, then of setting, with now() at their due time", async () => {
		const clock = new FakeClock({ start: 1000 });
		const ran: string[] = [];
		clock.setTimeout(() => ran.push(`b@${clock.now()}`), 20);
		clock.setTimeout(() => ran.push(`a@${clock.now()}`), 10);
		clock.setTimeout(() => ran.push(`c@${clock.now()}`), 20);
		clock.setTimeout(() => ran.push(`late@${clock.now()}`), 31);
		await clock.advance(30);
		expect(ran).toEqual(["a@1010", "b@1020", "c@1020"]);
		expect(clock.now()).toBe(1030);
		expect(clock.pending).toBe(1);
		expect(clock.nextDue()).toBe(1031);
	});

	test("clearTimeout cancels; negative delays are due now", async () => {
		const clock = new FakeClock({ start: 0 });
		const ran: string[] = [];
		const h = clock.setTimeout(() => ran.push("cleared"), 5);
		clock.setTimeout(() => ran.push("now"), -5);
		clock.clearTimeout(h);
		await clock.advance(0);
		expect(ran).toEqual(["now"]);
		expect(clock.pending).toBe(0);
	});

	test("lets promises settle between timers: a timer set by a timer's async work runs in the same advance", async () => {
		const clock = new FakeClock({ start: 0 });
		const ran: number[] = [];
		const sleep = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
		void (async () => {
			for (let i = 0; i < 3; i++) {
				await sleep(100);
				await new Promise<void>((r) => setImmediate(r));
				ran.push(clock.now());
			}
		})();
		await clock.advance(250);
		expect(ran).toEqual([100, 200]);
		await clock.advance(50);
		expect(ran).toEqual([100, 200, 300]);
	});

	test("runAll runs until no timer is left, and stops a timer that re-arms forever", async () => {
		const clock = new FakeClock({ start: 0 });
		let n = 0;
		clock.setTimeout(() => clock.setTimeout(() => n++, 50), 50);
		await clock.runAll();
		expect([n, clock.now()]).toEqual([1, 100]);
		const rearm = () => void clock.setTimeout(rearm, 1);
		rearm();
		await expect(clock.runAll(10)).rejects.toThrow("more than 10 timers ran");
	});

	test("never goes back in time", async () => {
		const clock = new FakeClock({ start: 10 });
		await expect(clock.advance(-1)).rejects.toThrow();
		await expect(clock.advanceTo(5)).rejects.toThrow();
	});
});
