import { planAssignment, splitForFailover, workersAfter } from "../../lib/core/assignment";
import { applyMovesToMap } from "../support/assignment";

type Assign = Record<string, string[]>;

const jobs = (n: number, prefix = "j") => Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(6, "0")}`);
const toMap = (a: Assign) => new Map(Object.entries(a));

function loads(result: Map<string, string[]>, workers: string[]): number[] {
	return workers.map((w) => result.get(w)?.length ?? 0);
}

function check(current: Assign, jobIds: string[], live: string[], excluded: string[] = []) {
	const moves = planAssignment(toMap(current), jobIds, live, { excluded });
	const result = applyMovesToMap(toMap(current), moves);
	const eligible = live.filter((w) => !excluded.includes(w));
	if (eligible.length > 0) {
		// Every job on exactly one eligible worker; no record left on dead or excluded workers.
		const seen = new Map<string, string>();
		for (const [w, js] of result) {
			for (const j of js) {
				expect(seen.has(j)).toBe(false);
				seen.set(j, w);
				expect(eligible).toContain(w);
			}
		}
		expect([...seen.keys()].sort()).toEqual([...new Set(jobIds)].sort());
		const l = loads(result, eligible);
		expect(Math.max(...l) - Math.min(...l)).toBeLessThanOrEqual(1);
	}
	return { moves, result };
}

describe("planAssignment", () => {
	test.each<[string, Assign, string[], string[], string[], number]>([
		// name, current, jobs, live, excluded, expected number of moves
		["empty: no jobs, no workers", {}, [], [], [], 0],
		["no jobs, some workers", {}, [], ["a", "b"], [], 0],
		["fresh: 6 jobs on 3 workers", {}, jobs(6), ["a", "b", "c"], [], 6],
		["already balanced: no moves", { a: ["j1", "j2"], b: ["j3", "j4"] }, ["j1", "j2", "j3", "j4"], ["a", "b"], [], 0],
		["join: 6+6 -> 3 workers moves 4", { a: jobs(6).slice(0, 6), b: jobs(12).slice(6) }, jobs(12), ["a", "b", "c"], [], 4],
		["leave: b dead, its 3 jobs move to c", { a: ["j1", "j2", "j3"], b: ["j4", "j5", "j6"] }, ["j1", "j2", "j3", "j4", "j5", "j6"], ["a", "c"], [], 3],
		["excluded worker sheds its jobs", { a: ["j1", "j2"], b: ["j3", "j4"] }, ["j1", "j2", "j3", "j4"], ["a", "b", "c"], ["b"], 2],
		["removals: deleted jobs go to null", { a: ["j1", "gone"], b: ["j2"] }, ["j1", "j2"], ["a", "b"], [], 1],
		["removal on a dead worker", { dead: ["gone"] }, [], ["a"], [], 1],
		["unassigned jobs go to least loaded", { a: ["j1", "j2", "j3"], b: ["j4"] }, ["j1", "j2", "j3", "j4", "j5", "j6"], ["a", "b"], [], 2],
		["duplicate holder is cleaned", { a: ["j1"], b: ["j1", "j2"] }, ["j1", "j2"], ["a", "b"], [], 1],
		["one worker takes all", { x: ["j1"] }, ["j1", "j2", "j3"], ["a"], [], 3],
	])("%s", (_name, current, jobIds, live, excluded, expectedMoves) => {
		const { moves } = check(current, jobIds, live, excluded);
		expect(moves.length).toBe(expectedMoves);
	});

	test("no live workers: nothing assigned, dead records kept, deleted jobs removed", () => {
		const moves = planAssignment(toMap({ dead: ["j1", "gone"] }), ["j1", "j2"], []);
		expect(moves).toEqual([{ jobId: "gone", from: "dead", to: null }]);
	});

	test("only excluded workers: their jobs are unassigned", () => {
		const moves = planAssignment(toMap({ a: ["j1"], dead: ["j2"] }), ["j1", "j2", "j3"], ["a"], { excluded: ["a"] });
		expect(moves).toEqual([{ jobId: "j1", from: "a", to: null }]);
	});

	test("jobs from a dead worker are moved with from = the dead worker", () => {
		const moves = planAssignment(toMap({ a: ["j1"], b: ["j2"] }), ["j1", "j2"], ["a", "c"]);
		expect(moves).toEqual([{ jobId: "j2", from: "b", to: "c" }]);
	});

	test("deterministic: same input, same moves, regardless of map/list order", () => {
		const cur1 = new Map([
			["b", ["j3", "j1"]],
			["a", ["j2"]],
		]);
		const cur2 = new Map([
			["a", ["j2"]],
			["b", ["j1", "j3"]],
		]);
		const m1 = planAssignment(cur1, ["j1", "j2", "j3", "j4", "j5"], ["c", "a", "b"]);
		const m2 = planAssignment(cur2, ["j5", "j4", "j3", "j2", "j1"], ["a", "b", "c"]);
		expect(m1).toEqual(m2);
	});

	test("minimal moves when a worker joins: exactly the surplus moves", () => {
		for (const [n, w] of [
			[10, 2],
			[11, 3],
			[100, 4],
			[1000, 7],
		]) {
			const all = jobs(n);
			const workers = Array.from({ length: w }, (_, i) => `w${i}`);
			const first = applyMovesToMap(new Map(), planAssignment(new Map(), all, workers));
			const joined = [...workers, "new"];
			const { moves } = check(Object.fromEntries(first), all, joined);
			// The newcomer needs floor(n/(w+1)) (or one more); only those move.
			expect(moves.length).toBe(Math.floor(n / (w + 1)));
			expect(moves.every((m) => m.to === "new")).toBe(true);
		}
	});

	test("stable: re-planning a planned assignment moves nothing", () => {
		const all = jobs(1001);
		const a1 = applyMovesToMap(new Map(), planAssignment(new Map(), all, ["a", "b", "c"]));
		expect(planAssignment(a1, all, ["a", "b", "c"])).toEqual([]);
	});

	test("100,000 jobs x 3 workers (timing printed)", () => {
		const all = jobs(100_000);
		let t = process.hrtime.bigint();
		const moves = planAssignment(new Map(), all, ["w1", "w2", "w3"]);
		const fresh = Number(process.hrtime.bigint() - t) / 1e6;
		expect(moves.length).toBe(100_000);
		const assigned = applyMovesToMap(new Map(), moves);
		expect(loads(assigned, ["w1", "w2", "w3"])).toEqual([33334, 33333, 33333]);

		t = process.hrtime.bigint();
		const join = planAssignment(assigned, all, ["w1", "w2", "w3", "w4"]);
		const joinMs = Number(process.hrtime.bigint() - t) / 1e6;
		expect(join.length).toBe(25_000);

		t = process.hrtime.bigint();
		const leave = planAssignment(assigned, all, ["w1", "w2"]);
		const leaveMs = Number(process.hrtime.bigint() - t) / 1e6;
		expect(leave.length).toBe(33_333);
		console.log(`planAssignment 100k jobs: fresh/3 workers ${fresh.toFixed(1)} ms, join 4th ${joinMs.toFixed(1)} ms, leave to 2 ${leaveMs.toFixed(1)} ms`);
		expect(fresh + joinMs + leaveMs).toBeLessThan(5000);
	});
});

describe("splitForFailover", () => {
	const cases: Array<{
		name: string;
		moves: { jobId: string; from: string | null; to: string | null }[];
		live: string[];
		first: unknown[];
		cleanup: unknown[];
	}> = [
		{ name: "new job", moves: [{ jobId: "a", from: null, to: "w1" }], live: ["w1"], first: [{ jobId: "a", from: null, to: "w1" }], cleanup: [] },
		{
			name: "rebalance between live workers stays whole",
			moves: [{ jobId: "a", from: "w1", to: "w2" }],
			live: ["w1", "w2"],
			first: [{ jobId: "a", from: "w1", to: "w2" }],
			cleanup: [],
		},
		{
			name: "removal from a live worker",
			moves: [{ jobId: "a", from: "w1", to: null }],
			live: ["w1"],
			first: [{ jobId: "a", from: "w1", to: null }],
			cleanup: [],
		},
		{
			name: "off a dead worker: create first, tidy after",
			moves: [{ jobId: "a", from: "dead", to: "w1" }],
			live: ["w1"],
			first: [{ jobId: "a", from: null, to: "w1" }],
			cleanup: [{ jobId: "a", from: "dead", to: null }],
		},
		{
			name: "removal from a dead worker is tidying only",
			moves: [{ jobId: "a", from: "dead", to: null }],
			live: ["w1"],
			first: [],
			cleanup: [{ jobId: "a", from: "dead", to: null }],
		},
	];
	it.each(cases)("$name", ({ moves, live, first, cleanup }) => {
		expect(splitForFailover(moves, live)).toEqual({ first, cleanup });
	});

	it("applying both parts gives the plan's result; after `first` alone every job is already on its live worker", () => {
		const current = toMap({ w1: jobs(30, "a"), w2: jobs(30, "b"), dead: jobs(30, "c") });
		const all = [...jobs(30, "a"), ...jobs(30, "b"), ...jobs(30, "c")];
		const moves = planAssignment(current, all, ["w1", "w2", "w3"]);
		const { first, cleanup } = splitForFailover(moves, ["w1", "w2", "w3"]);
		const planned = applyMovesToMap(toMap({ w1: jobs(30, "a"), w2: jobs(30, "b"), dead: jobs(30, "c") }), moves);
		const afterFirst = applyMovesToMap(toMap({ w1: jobs(30, "a"), w2: jobs(30, "b"), dead: jobs(30, "c") }), first);
		for (const w of ["w1", "w2", "w3"]) expect([...(afterFirst.get(w) ?? [])].sort()).toEqual([...(planned.get(w) ?? [])].sort());
		const both = applyMovesToMap(afterFirst, cleanup);
		for (const w of ["w1", "w2", "w3", "dead"]) expect([...(both.get(w) ?? [])].sort()).toEqual([...(planned.get(w) ?? [])].sort());
		// A crash between the two steps: the next plan keeps the live holders and only tidies.
		const again = planAssignment(afterFirst, all, ["w1", "w2", "w3"]);
		expect(again.every((m) => m.from === "dead" && m.to === null)).toBe(true);
	});
});

describe("workersAfter (the jobs' display column)", () => {
	const cases: Array<{
		name: string;
		current: Assign;
		moves: { jobId: string; from: string | null; to: string | null }[];
		expected: { jobId: string; to: string | null }[];
	}> = [
		{ name: "moved", current: { w1: ["a"] }, moves: [{ jobId: "a", from: "w1", to: "w2" }], expected: [{ jobId: "a", to: "w2" }] },
		{ name: "new", current: {}, moves: [{ jobId: "a", from: null, to: "w1" }], expected: [{ jobId: "a", to: "w1" }] },
		{ name: "removed (deleted job)", current: { w1: ["a"] }, moves: [{ jobId: "a", from: "w1", to: null }], expected: [{ jobId: "a", to: null }] },
		{
			name: "duplicate record dropped: keeps the holder",
			current: { w1: ["a"], w3: ["a"] },
			moves: [{ jobId: "a", from: "w3", to: null }],
			expected: [{ jobId: "a", to: "w1" }],
		},
		{
			name: "dead record tidied, job already moved",
			current: { dead: ["a"], w1: ["a"] },
			moves: [{ jobId: "a", from: "dead", to: null }],
			expected: [{ jobId: "a", to: "w1" }],
		},
	];
	it.each(cases)("$name", ({ current, moves, expected }) => {
		expect(workersAfter(toMap(current), moves)).toEqual(expected);
	});

	it("agrees with the plan applied, for every moved job", () => {
		const current = toMap({ w1: jobs(40, "a"), w3: [...jobs(20, "a"), ...jobs(10, "c")], dead: jobs(15, "d") });
		const all = [...jobs(40, "a"), ...jobs(10, "c"), ...jobs(15, "d")];
		const moves = planAssignment(current, all, ["w1", "w2", "w3"]);
		const after = applyMovesToMap(toMap({ w1: jobs(40, "a"), w3: [...jobs(20, "a"), ...jobs(10, "c")], dead: jobs(15, "d") }), moves);
		const where = new Map<string, string>();
		for (const [w, js] of after) for (const j of js) where.set(j, w);
		for (const d of workersAfter(current, moves)) expect([d.jobId, d.to]).toEqual([d.jobId, where.get(d.jobId) ?? null]);
	});
});
