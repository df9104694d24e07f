import { bySequence, decodeId, DEFAULT_ROOT, encodeId, normalizeRoot, parseClaimName, parseElectionName, sequenceOf, ZkPaths } from "../../lib/core/zkpaths";

describe("encodeId / decodeId", () => {
	test.each([
		["worker-1", "worker-1"],
		["node.example.com-1234", "node.example.com-1234"],
		["host:4222", "host:4222"],
		["under_score", "under_score"],
		["a/b", "a%2Fb"],
		["100%", "100%25"],
		["with space", "with%20space"],
		["é", "%C3%A9"],
		[".", "%2E"],
		["..", "%2E%2E"],
		["...", "..."],
		["zookeeper", "zookeeper"],
		["\u0000", "%00"],
	])("%j <-> %j", (id, encoded) => {
		expect(encodeId(id)).toBe(encoded);
		expect(decodeId(encoded)).toBe(id);
	});

	test("refuses an empty id", () => {
		expect(() => encodeId("")).toThrow();
	});

	test.each([
		["", "empty"],
		["a/b", "contains a slash"],
		["%2", "broken escape"],
		["%zz", "not hex"],
		["%41", "non-canonical (A needs no escape)"],
		["a%2fb", "lowercase hex is not canonical"],
		["a b", "raw unsafe character"],
	])("decodeId(%j) is null: %s", (segment) => {
		expect(decodeId(segment)).toBeNull();
	});
});

describe("normalizeRoot", () => {
	test.each([
		[undefined, "/cronjob"],
		["/cronjob", "/cronjob"],
		["/cronjob/", "/cronjob"],
		["/a/b", "/a/b"],
		["/cronjob-test-abc123", "/cronjob-test-abc123"],
	])("%j -> %j", (input, out) => {
		expect(normalizeRoot(input)).toBe(out);
	});

	test.each(["", "cronjob", "/", "//x", "/a//b", "/a/./b", "/a/..", "/zookeeper"])("refuses %j", (input) => {
		expect(() => normalizeRoot(input)).toThrow();
	});
});

describe("ZkPaths builders", () => {
	const p = new ZkPaths();
	test.each([
		["root", p.root, "/cronjob"],
		["workers", p.workers, "/cronjob/workers"],
		["worker", p.worker("node-1.local:99"), "/cronjob/workers/node-1.local:99"],
		["worker encoded", p.worker("a/b"), "/cronjob/workers/a%2Fb"],
		["election prefix", p.electionPrefix("abc123"), "/cronjob/election/n_abc123_"],
		["election node", p.electionNode("n_abc_0000000001"), "/cronjob/election/n_abc_0000000001"],
		["assignment worker", p.assignmentWorker("w1"), "/cronjob/assignments/w1"],
		["assignment", p.assignment("w1", "job-42"), "/cronjob/assignments/w1/job-42"],
		["claim job", p.claimJob("job-42"), "/cronjob/claims/job-42"],
		["claim", p.claim("job-42", 1700000000000), "/cronjob/claims/job-42/1700000000000"],
		["claim prefix", p.claimPrefix("job-42", 0, "g1"), "/cronjob/claims/job-42/0/lock-g1-"],
		["custom root", new ZkPaths("/cronjob-test-x/").worker("w"), "/cronjob-test-x/workers/w"],
	])("%s", (_name, actual, expected) => {
		expect(actual).toBe(expected);
	});

	test("base paths", () => {
		expect(p.basePaths()).toEqual(["/cronjob/workers", "/cronjob/election", "/cronjob/assignments", "/cronjob/claims"]);
		expect(DEFAULT_ROOT).toBe("/cronjob");
	});

	test.each([
		["negative scheduledAt", () => p.claim("j", -1)],
		["fractional scheduledAt", () => p.claim("j", 1.5)],
		["NaN scheduledAt", () => p.claim("j", Number.NaN)],
		["unsafe guid", () => p.electionPrefix("a-b")],
		["empty guid", () => p.claimPrefix("j", 1, "")],
		["empty worker id", () => p.worker("")],
	])("refuses %s", (_name, fn) => {
		expect(fn).toThrow();
	});
});

describe("sequence helpers", () => {
	test.each([
		["n_a_0000000012", 12],
		["lock-a-0000000001", 1],
		["worker", null],
	])("sequenceOf(%j) = %j", (name, seq) => {
		expect(sequenceOf(name)).toBe(seq);
	});

	test("bySequence orders by the appended sequence, not the guid", () => {
		const names = ["n_zz_0000000003", "n_aa_0000000010", "n_mm_0000000001"];
		expect([...names].sort(bySequence)).toEqual(["n_mm_0000000001", "n_zz_0000000003", "n_aa_0000000010"]);
	});

	test("name parsers", () => {
		expect(parseElectionName("n_g_0000000001")).toEqual({ guid: "g", seq: 1 });
		expect(parseClaimName("lock-g-0000000001")).toEqual({ guid: "g", seq: 1 });
		expect(parseClaimName("n_g_0000000001")).toBeNull();
	});
});
