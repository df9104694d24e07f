import {
	clockOffsetFrom,
	clockSkewed,
	heldFireAfterReload,
	jobStatusAfterRun,
	misfireDecision,
	overlapDecision,
	prefireDecision,
	prefireLeadMs,
	retryDelayMs,
	shouldRetry,
} from "../../lib/core/policies";
import type { ConcurrencyPolicy, JobStatus, MisfirePolicy, RunStatus, RunTrigger } from "../../lib/core/types";

const T = (iso: string) => Date.parse(iso);
const A = T("2025-01-01T00:00:00Z");
const B = T("2025-01-01T01:00:00Z");
const C = T("2025-01-01T02:00:00Z");
const D = T("2025-01-01T03:00:00Z");

describe("misfireDecision", () => {
	test.each<[string, MisfirePolicy, number[], number | undefined, number[], number[]]>([
		// name, policy, missed, maxCatchUp, run, missed
		["run_all runs every one", "run_all", [A, B, C], undefined, [A, B, C], []],
		["run_once runs the latest", "run_once", [A, B, C], undefined, [C], [A, B]],
		["skip runs none", "skip", [A, B, C], undefined, [], [A, B, C]],
		["run_all nothing missed", "run_all", [], undefined, [], []],
		["run_once nothing missed", "run_once", [], undefined, [], []],
		["skip nothing missed", "skip", [], undefined, [], []],
		["run_once single", "run_once", [A], undefined, [A], []],
		["run_all cap keeps the newest", "run_all", [A, B, C, D], 2, [C, D], [A, B]],
		["run_all cap equal to length", "run_all", [A, B, C], 3, [A, B, C], []],
		["run_all cap 0 runs none", "run_all", [A, B], 0, [], [A, B]],
		["cap does not affect run_once", "run_once", [A, B, C], 1, [C], [A, B]],
		["unsorted input is sorted", "run_once", [C, A, B], undefined, [C], [A, B]],
		["duplicates collapse", "run_all", [A, A, B], undefined, [A, B], []],
	])("%s", (_name, policy, missed, cap, run, marked) => {
		const input = missed.slice();
		expect(misfireDecision(policy, input, cap)).toEqual({ run, missed: marked });
		expect(input).toEqual(missed);
	});

	test("default cap is 1000", () => {
		const many = Array.from({ length: 1500 }, (_, i) => A + i * 60_000);
		const d = misfireDecision("run_all", many);
		expect(d.run).toHaveLength(1000);
		expect(d.run[0]).toBe(many[500]);
		expect(d.run[999]).toBe(many[1499]);
		expect(d.missed).toEqual(many.slice(0, 500));
	});

	test("unknown policy throws", () => {
		expect(() => misfireDecision("later" as MisfirePolicy, [A])).toThrow(TypeError);
	});
});

describe("overlapDecision", () => {
	test.each<[ConcurrencyPolicy, number, "run" | "skip" | "replace"]>([
		["allow", 0, "run"],
		["allow", 1, "run"],
		["allow", 5, "run"],
		["forbid", 0, "run"],
		["forbid", 1, "skip"],
		["forbid", 3, "skip"],
		["replace", 0, "run"],
		["replace", 1, "replace"],
		["replace", 2, "replace"],
	])("%s with %d running → %s", (policy, running, expected) => {
		expect(overlapDecision(policy, running)).toBe(expected);
	});

	test("unknown policy throws", () => {
		expect(() => overlapDecision("queue" as ConcurrencyPolicy, 1)).toThrow(TypeError);
	});
});

describe("retryDelayMs", () => {
	test.each<[number, { baseMs?: number; maxMs?: number } | undefined, number]>([
		[1, undefined, 1000],
		[2, undefined, 2000],
		[3, undefined, 4000],
		[4, undefined, 8000],
		[6, undefined, 32_000],
		[7, undefined, 60_000],
		[10, undefined, 60_000],
		[10_000, undefined, 60_000],
		[0, undefined, 1000],
		[-3, undefined, 1000],
		[Number.NaN, undefined, 1000],
		[2.7, undefined, 2000],
		[1, { baseMs: 500 }, 500],
		[3, { baseMs: 500 }, 2000],
		[3, { baseMs: 500, maxMs: 1500 }, 1500],
		[5, { maxMs: 10_000 }, 10_000],
		[1, { baseMs: 0 }, 0],
	])("attempt %d %j → %d ms", (attempt, opts, expected) => {
		expect(retryDelayMs(attempt, opts)).toBe(expected);
	});

	test.each<[number, number, number]>([
		// attempt, random, expected (equal jitter in [delay/2, delay))
		[1, 0, 500],
		[1, 0.5, 750],
		[3, 0.25, 2500],
		[10, 0, 30_000],
		[10, 0.999999, 59_999],
	])("jitter: attempt %d, random %d → %d", (attempt, r, expected) => {
		expect(retryDelayMs(attempt, { random: () => r })).toBe(expected);
	});

	test("invalid options throw", () => {
		expect(() => retryDelayMs(1, { baseMs: -1 })).toThrow(RangeError);
		expect(() => retryDelayMs(1, { maxMs: Number.POSITIVE_INFINITY })).toThrow(RangeError);
	});
});

describe("shouldRetry", () => {
	test.each<[RunStatus, number, number, boolean]>([
		["failed", 1, 0, false],
		["failed", 1, 1, true],
		["failed", 2, 1, false],
		["failed", 1, 2, true],
		["failed", 2, 2, true],
		["failed", 3, 2, false],
		["timed_out", 1, 2, true],
		["timed_out", 3, 2, false],
		["succeeded", 1, 2, false],
		["skipped", 1, 2, false],
		["missed", 1, 2, false],
		["running", 1, 2, false],
		["failed", 10, 10, true],
		["failed", 11, 10, false],
	])("%s, attempt %d, retries %d → %s", (status, attempt, retries, expected) => {
		expect(shouldRetry(status, attempt, retries)).toBe(expected);
	});
});

describe("jobStatusAfterRun", () => {
	test.each<[string, boolean, JobStatus, RunStatus, boolean, JobStatus]>([
		// name, recurring, status, runStatus, willRetry, expected
		["recurring success", true, "scheduled", "succeeded", false, "scheduled"],
		["recurring success after error", true, "error", "succeeded", false, "scheduled"],
		["recurring failure", true, "scheduled", "failed", false, "error"],
		["recurring timeout", true, "scheduled", "timed_out", false, "error"],
		["recurring failure, retry pending", true, "scheduled", "failed", true, "scheduled"],
		["recurring failure, retry pending, was error", true, "error", "failed", true, "error"],
		["recurring skipped", true, "scheduled", "skipped", false, "scheduled"],
		["recurring missed", true, "error", "missed", false, "error"],
		["recurring running", true, "scheduled", "running", false, "scheduled"],
		["one-shot success", false, "scheduled", "succeeded", false, "finished"],
		["one-shot final failure", false, "scheduled", "failed", false, "error"],
		["one-shot final timeout", false, "scheduled", "timed_out", false, "error"],
		["one-shot failure, retry pending", false, "scheduled", "failed", true, "scheduled"],
		["one-shot success after retries", false, "scheduled", "succeeded", false, "finished"],
		["one-shot skipped", false, "scheduled", "skipped", false, "scheduled"],
		["one-shot missed", false, "scheduled", "missed", false, "scheduled"],
	])("%s", (_name, recurring, status, runStatus, willRetry, expected) => {
		expect(jobStatusAfterRun({ recurring, status }, runStatus, willRetry)).toBe(expected);
	});

	test("unknown run status throws", () => {
		expect(() => jobStatusAfterRun({ recurring: true, status: "scheduled" }, "exploded" as RunStatus, false)).toThrow(TypeError);
	});
});

describe("prefireDecision", () => {
	const at = Date.parse("2026-03-08T07:00:00Z");
	const cases: Array<[ConcurrencyPolicy, RunTrigger, number, number, number, "prefire" | "wait" | "now"]> = [
		// concurrency, trigger, attempt, now, lead, decision
		["allow", "schedule", 1, at - 1000, 1000, "prefire"],
		["allow", "schedule", 1, at - 1, 1000, "prefire"],
		["allow", "schedule", 1, at, 1000, "now"],
		["allow", "schedule", 1, at + 5, 1000, "now"],
		["allow", "schedule", 1, at - 500, 0, "wait"],
		["forbid", "schedule", 1, at - 500, 1000, "wait"],
		["replace", "schedule", 1, at - 500, 1000, "wait"],
		["replace", "schedule", 1, at, 1000, "now"],
		["allow", "retry", 2, at - 500, 1000, "wait"],
		["allow", "schedule", 2, at - 500, 1000, "wait"],
		["allow", "catchup", 1, at - 500, 1000, "wait"],
		["allow", "manual", 1, at - 500, 1000, "wait"],
	];
	it.each(cases)("%s %s attempt %d now=%d lead=%d -> %s", (concurrency, trigger, attempt, now, lead, expected) => {
		expect(prefireDecision({ recurring: true, concurrency }, { trigger, attempt, at }, now, lead)).toBe(expected);
	});
	it("without a free process slot (an overloaded worker) it waits for the instant", () => {
		expect(prefireDecision({ recurring: true, concurrency: "allow" }, { trigger: "schedule", attempt: 1, at }, at - 500, 1000, false)).toBe("wait");
		expect(prefireDecision({ recurring: true, concurrency: "allow" }, { trigger: "schedule", attempt: 1, at }, at, 1000, false)).toBe("now");
	});
	it("a one-shot job is not prefired", () => {
		expect(prefireDecision({ recurring: false, concurrency: "allow" }, { trigger: "schedule", attempt: 1, at }, at - 500, 1000)).toBe("wait");
	});
});

describe("prefireLeadMs", () => {
	const cases: Array<[boolean, ConcurrencyPolicy, number, number]> = [
		[true, "allow", 1000, 1000],
		[true, "allow", 0, 0],
		[true, "allow", -5, 0],
		[true, "forbid", 1000, 0],
		[true, "replace", 1000, 0],
		[false, "allow", 1000, 0],
	];
	it.each(cases)("recurring=%s %s lead=%d -> %d", (recurring, concurrency, lead, expected) => {
		expect(prefireLeadMs({ recurring, concurrency }, lead)).toBe(expected);
	});
});

describe("heldFireAfterReload", () => {
	const held = { updatedAt: 1000 };
	const cases: Array<[string, { updatedAt: number; schedulable: boolean; firesAt: boolean } | null, "keep" | "rebuild" | "cancel"]> = [
		["unchanged", { updatedAt: 1000, schedulable: true, firesAt: true }, "keep"],
		["patched, still fires then", { updatedAt: 2000, schedulable: true, firesAt: true }, "rebuild"],
		["patched schedule, no longer fires then", { updatedAt: 2000, schedulable: true, firesAt: false }, "cancel"],
		["deleted or suspended", { updatedAt: 2000, schedulable: false, firesAt: true }, "cancel"],
		["gone from the database", null, "cancel"],
	];
	it.each(cases)("%s -> %s", (_name, fresh, expected) => {
		expect(heldFireAfterReload(held, fresh)).toBe(expected);
	});
});

describe("clockOffsetFrom (NTP's choice of sample)", () => {
	test.each<[string, { sentAt: number; serverTime: number; receivedAt: number }[], { offsetMs: number; errorMs: number } | null]>([
		["no sample", [], null],
		["one sample: the middle of the round trip, half of it the error", [{ sentAt: 1000, serverTime: 1040, receivedAt: 1100 }], { offsetMs: 10, errorMs: 50 }],
		[
			"the smallest round trip wins",
			[
				{ sentAt: 0, serverTime: 900, receivedAt: 2000 },
				{ sentAt: 5000, serverTime: 5010, receivedAt: 5020 },
				{ sentAt: 9000, serverTime: 9000, receivedAt: 9500 },
			],
			{ offsetMs: 0, errorMs: 10 },
		],
		["a clock 5 s ahead of the server", [{ sentAt: 10_000, serverTime: 5005, receivedAt: 10_010 }], { offsetMs: 5000, errorMs: 5 }],
	])("%s", (_name, samples, expected) => {
		expect(clockOffsetFrom(samples)).toEqual(expected);
	});
});

describe("clockSkewed (excluded only when surely off)", () => {
	test.each<[number | null, number | null, boolean]>([
		[null, null, false],
		[999, 0, false],
		[1001, 0, true],
		[-1001, 0, true],
		[1500, 500, false],
		[1500, 499, true],
		[-1500, 600, false],
		[2000, null, true],
	])("offset %p ± %p (bound 1000) -> %p", (offset, error, skewed) => {
		expect(clockSkewed(offset, error, 1000)).toBe(skewed);
	});
});
