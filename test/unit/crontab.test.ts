import { Crontab, formatCrontab } from "../../lib/core/crontab";

describe("Crontab", () => {
	it("pops due entries earliest first and keeps the rest", () => {
		const c = new Crontab();
		c.set("b", 2000);
		c.set("a", 1000);
		c.set("c", 3000);
		expect(c.peek()).toEqual({ jobId: "a", at: 1000, due: 1000 });
		expect(c.popDue(2000)).toEqual([
			{ jobId: "a", at: 1000, due: 1000 },
			{ jobId: "b", at: 2000, due: 2000 },
		]);
		expect(c.size).toBe(1);
		expect(c.popDue(2999)).toEqual([]);
		expect(c.peek()).toEqual({ jobId: "c", at: 3000, due: 3000 });
	});

	it("replaces an entry: the old time never fires", () => {
		const c = new Crontab();
		c.set("a", 1000);
		c.set("a", 5000);
		expect(c.popDue(4000)).toEqual([]);
		expect(c.popDue(5000)).toEqual([{ jobId: "a", at: 5000, due: 5000 }]);
	});

	it("deletes an entry", () => {
		const c = new Crontab();
		c.set("a", 1000);
		c.set("b", 1000);
		expect(c.delete("a")).toBe(true);
		expect(c.popDue(1000)).toEqual([{ jobId: "b", at: 1000, due: 1000 }]);
		expect(c.size).toBe(0);
	});

	it("stays ordered under many replacements (compaction)", () => {
		const c = new Crontab();
		for (let round = 0; round < 50; round++) for (let i = 0; i < 100; i++) c.set(`j${i}`, 10_000 - i + round);
		const due = c.popDue(Number.MAX_SAFE_INTEGER);
		expect(due).toHaveLength(100);
		for (let i = 1; i < due.length; i++) expect(due[i].at).toBeGreaterThanOrEqual(due[i - 1].at);
	});

	it("hands an entry over its lead ahead of its fire time, ordered by that", () => {
		const c = new Crontab();
		c.set("plain", 1000);
		c.set("early", 1500, 1000); // due at 500
		c.set("neg", 3000, -5); // a negative lead is none
		expect(c.peek()).toEqual({ jobId: "early", at: 1500, due: 500 });
		expect(c.popDue(499)).toEqual([]);
		expect(c.popDue(999)).toEqual([{ jobId: "early", at: 1500, due: 500 }]);
		expect(c.popDue(2999)).toEqual([{ jobId: "plain", at: 1000, due: 1000 }]);
		expect(c.popDue(3000)).toEqual([{ jobId: "neg", at: 3000, due: 3000 }]);
	});

	it("formats crontab(5) lines", () => {
		const text = formatCrontab([{ id: "j1", schedule: "*/5 * * * *", timezone: "UTC", nextAt: Date.UTC(2026, 0, 1), command: "echo hi" }]);
		expect(text).toContain("*/5 * * * * echo hi");
		expect(text).toContain("next=2026-01-01T00:00:00.000Z");
	});
});
