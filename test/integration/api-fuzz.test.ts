/**
 * Property-based tests of the REST API's edge (fast-check) on a real node (SQLite, its own data
 * folder, port 0): requests generated for every route (path ids, query strings, bodies with every
 * field of every JSON type, control characters, content encodings and charsets, tokens of any
 * length, OPTIONS) and, for each one:
 * - no answer is a 5xx;
 * - every 4xx is the API's JSON error with `data.field` naming a field;
 * - a refused request (4xx) changes nothing: the row counts of jobs, runs and users, and the
 *   sentinel job's row (its updatedAt among the rest), are what they were before it;
 * - OPTIONS runs no action (it changes nothing, whatever it answers);
 * - a token that is not valid, of any length, is a 401 naming `authorization`.
 *
 * Seeded and bounded: FUZZ_SEED (default below) and FUZZ_RUNS (runs per property) replay or widen a
 * run; fast-check prints the seed and the shrunk request of a failure.
 *
 * Valid bodies never ask for retries and never name a schedule that fires soon (only 29 February),
 * so nothing changes the database behind a request's back: a manual run (`POST /jobs/{id}/run`,
 * 202) is waited for until it has finished before the next request.
 */
import type * as http from "node:http";
import * as zlib from "node:zlib";
import fc from "fast-check";
import mysql from "mysql2/promise";
import { QueryTypes, type Model, type ModelStatic, type Sequelize } from "sequelize";
import { ADMIN_TOKEN, startNode, type TestNode } from "../support/node";
import { rawRequest } from "../support/raw-http";
import { waitFor } from "../support/wait";

const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
const PARAMS = { seed: SEED, numRuns: RUNS };

let node: TestNode;
let jobsDb: Sequelize;
let usersModel: ModelStatic<Model>;
let alice: { id: string; token: string };
let bob: { id: string; token: string };
/** Alice's job, the one whose row every refused request must leave alone. */
let sentinel: string;
/** Another of Alice's jobs, for DELETE (the sentinel stays live for PATCH). */
let doomed: string;
/**
 * The one job `POST /jobs/{id}/run` may run: `true`, never patched (PATCH may give the others any
 * executable, which is then never run).
 */
let runner: string;
/** Users the fuzz may delete (never the ones whose tokens it uses). */
const victims: string[] = [];

/** A schedule that fires only on 29 February: a created job never fires during the test. */
const QUIET_SCHEDULES = ["0 0 29 2 *", "30 12 29 FEB *", "0 0 0 29 2 *", "  0 0 29 2 *\t"];

interface Answer {
	status: number;
	body: any;
	text: string;
	headers: http.IncomingHttpHeaders;
}

interface Req {
	method: string;
	path: string;
	headers?: Record<string, string>;
	body?: Buffer;
}

/** One HTTP request as given (any method, a body on any method, raw bytes, any header). */
function send({ method, path, headers = {}, body }: Req): Promise<Answer> {
	return rawRequest(node.url, method, path, headers, body);
}

/** What a refused request must not change. */
async function snapshot() {
	const [counts] = await jobsDb.query<{ jobs: number; runs: number }>("SELECT (SELECT COUNT(*) FROM jobs) AS jobs, (SELECT COUNT(*) FROM runs) AS runs", {
		type: QueryTypes.SELECT,
	});
	const rows = await jobsDb.query<Record<string, unknown>>("SELECT * FROM jobs WHERE id = ?", { type: QueryTypes.SELECT, replacements: [sentinel] });
	// The manager writes the `worker` column behind its reconciles: not the request's doing.
	const { worker: _worker, ...row } = rows[0] ?? {};
	return { jobs: Number(counts.jobs), runs: Number(counts.runs), users: await usersModel.count(), sentinel: row };
}

/** No run left running (a manual run the fuzz started has finished, and its job's row is written). */
async function settle(): Promise<void> {
	await waitFor(
		async () => {
			const [r] = await jobsDb.query<{ n: number }>("SELECT COUNT(*) AS n FROM runs WHERE status = 'running'", { type: QueryTypes.SELECT });
			return Number(r.n) === 0;
		},
		10_000,
		"manual runs to finish",
	);
}

function describeReq(r: Req): string {
	const body = r.body === undefined ? "" : ` body=${JSON.stringify(r.body.toString("latin1").slice(0, 300))}`;
	return `${r.method} ${r.path.slice(0, 300)} headers=${JSON.stringify(r.headers ?? {}).slice(0, 300)}${body}`;
}

/** Answers seen per property, by status class: each property must get past the edge too (a 2xx) and be refused (a 4xx). */
let seen: Record<string, number> = {};

/** Send a request and hold the edge's properties; answers the answer for more checks. */
async function probe(r: Req): Promise<Answer> {
	const before = await snapshot();
	const res = await send(r);
	const cls = `${Math.floor(res.status / 100)}xx`;
	seen[cls] = (seen[cls] ?? 0) + 1;
	seen[res.status] = (seen[res.status] ?? 0) + 1;
	const what = `${describeReq(r)} -> ${res.status} ${res.text.slice(0, 500)}`;
	if (res.status >= 500) throw new Error(`5xx: ${what}`);
	if (res.status >= 400) {
		const field: unknown = res.body?.data?.field;
		// A string: "" too, when that is the name of the key at fault (`{"": 1}`).
		if (typeof field !== "string") throw new Error(`4xx without data.field: ${what}`);
		if (res.body.code !== res.status || typeof res.body.name !== "string" || typeof res.body.message !== "string" || typeof res.body.type !== "string") {
			throw new Error(`4xx not in the API's error shape: ${what}`);
		}
	}
	if (res.status >= 400 || r.method === "OPTIONS") {
		const after = await snapshot();
		try {
			expect(after).toEqual(before);
		} catch (err) {
			throw new Error(`a refused request changed the database: ${what}\n${(err as Error).message}`, { cause: err });
		}
	} else if (r.method === "POST" && r.path.endsWith("/run")) {
		await settle();
	}
	return res;
}

// ---- generators ----

const CONTROL = ["\u0000", "\n", "\r", "\t", "\u000b", "\u001b", "\u007f", "\u0085", "\u00a0", "\u2028", "\ufeff"];
const control = fc.constantFrom(...CONTROL);

/** Percent-encode every byte but the unreserved ones (so any string or byte run is a valid request path). */
function pct(bytes: Uint8Array): string {
	let out = "";
	for (const b of bytes) {
		const c = String.fromCharCode(b);
		out += /[A-Za-z0-9_.~-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
	}
	return out;
}
const enc = (s: string) => pct(Buffer.from(s, "utf8"));

/** A string with a control character (or a non-ASCII space) somewhere in it. */
const withControl = (base: fc.Arbitrary<string>) =>
	fc.tuple(base, control, fc.nat()).map(([s, c, at]) => {
		const i = s.length === 0 ? 0 : at % (s.length + 1);
		return s.slice(0, i) + c + s.slice(i);
	});

const anyText = fc.oneof(fc.string({ maxLength: 30 }), fc.string({ unit: "binary", maxLength: 30 }), withControl(fc.string({ maxLength: 20 })));
const anyJson = fc.jsonValue({ maxDepth: 2 });

/** A path id segment: known ids, known ids with a control character or NUL, random text and bytes, odd encodings. */
function idSegment(known: () => string[]): fc.Arbitrary<string> {
	return fc.oneof(
		{ weight: 6, arbitrary: fc.constantFrom(...known()).map(enc) },
		{ weight: 2, arbitrary: fc.tuple(fc.constantFrom(...known()), control).map(([id, c]) => enc(id + c)) },
		fc.constantFrom("%00", "%0A", "%", "%zz", "%E0%A4%A", "%C3%28", "%FF", "..", ".", "%2e%2e", "a%2Fb", "x".repeat(65), "y".repeat(400), "does-not-exist"),
		fc.string({ unit: "binary", minLength: 1, maxLength: 80 }).map(enc),
		fc.uint8Array({ minLength: 1, maxLength: 40 }).map(pct),
	);
}

/** A query string from pairs (values percent-encoded as UTF-8), and odd forms: repeats, brackets. */
function query(pairs: [string, string][]): string {
	return pairs.length === 0 ? "" : `?${pairs.map(([k, v]) => `${enc(k)}=${enc(v)}`).join("&")}`;
}

const numberText = fc.oneof(
	{ weight: 4, arbitrary: fc.integer({ min: 0, max: 1000 }).map(String) },
	fc.constantFrom(
		"1e20",
		"99999999999999999999",
		"-1",
		"0",
		"1",
		"1000",
		"1001",
		"2147483647",
		"2147483648",
		"1.5",
		"abc",
		"",
		"0x10",
		"Infinity",
		"NaN",
		"-0",
		"1e3",
		" 5 ",
	),
	fc.integer().map(String),
	fc.double().map(String),
	fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String),
	anyText,
);

/** Query pairs for the given names (each optional, sometimes repeated or bracketed), plus unknown ones. */
function queryPairs(values: Record<string, fc.Arbitrary<string>>): fc.Arbitrary<[string, string][]> {
	const names = Object.keys(values);
	const one = fc.oneof(
		...names.map((n) => values[n].map((v): [string, string] => [n, v])),
		...names.map((n) => values[n].map((v): [string, string] => [`${n}[x]`, v])),
		fc.tuple(anyText, anyText),
	);
	return fc.array(one, { maxLength: 5 });
}

const tokenValid = () => fc.constantFrom(ADMIN_TOKEN, alice.token, bob.token);

/** The Authorization header: a valid token (mostly), none, or an invalid one of any length. */
const authHeader = (): fc.Arbitrary<string | null> =>
	fc.oneof({ weight: 6, arbitrary: tokenValid().map((t) => `Bearer ${t}`) }, fc.constant(null), invalidAuth());

/** Printable ASCII without space: what a header value may carry and a token could be. */
const tokenChars = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 3000 });

function invalidAuth(): fc.Arbitrary<string> {
	return fc.oneof(
		tokenChars.filter((t) => ![ADMIN_TOKEN, alice.token, bob.token].includes(t)).map((t) => `Bearer ${t}`),
		fc.constantFrom("Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "Bearer a b", "Token x", "Bearer\t"),
		// Up to Node's header limit (16 KiB in all; beyond it a 431 naming headers, api-edge.test.ts).
		fc.integer({ min: 513, max: 15_000 }).map((n) => `Bearer ${"t".repeat(n)}`),
	);
}

function headersOf(auth: string | null, extra: Record<string, string> = {}): Record<string, string> {
	return auth === null ? extra : { authorization: auth, ...extra };
}

// Job fields: valid values (rarely), and values of every JSON type, control characters, edge numbers.
const scheduleArb = fc.oneof(
	fc.constantFrom(...QUIET_SCHEDULES),
	withControl(fc.constantFrom(...QUIET_SCHEDULES)),
	fc.constantFrom("*\n* * * *", "* * * * *\n", "\n0 0 29 2 *", "0\r0 29 2 *", "0 0 29 2\u00a0*", "0 0 29 2 *\u0000", "5 4", "61 * * * *", "@reboot", ""),
	anyText,
	anyJson,
);

const jobFields = {
	type: fc.oneof(fc.constantFrom("command", "script", "binary"), anyText, anyJson),
	executable: fc.oneof(
		fc.constantFrom("true", ":", "echo fuzz"),
		fc.constantFrom("", " ", "\u0000", "a\u0000b", "IyEvYmluL3NoCnRydWUK", "IyEvYmluL3No\nCnRydWUK", "not base64!", "s3://elsewhere/x", "file:///etc/passwd"),
		fc.constant("x".repeat(70_000)),
		anyText,
		anyJson,
	),
	schedule: scheduleArb,
	timezone: fc.oneof(fc.constantFrom("UTC", "utc", "Europe/Berlin", "Pacific/Kiritimati", "Mars/Olympus", "../etc", "UTC\n"), anyText, anyJson),
	name: fc.oneof(fc.constantFrom(null, "", "n".repeat(201)), fc.string({ maxLength: 30 }), anyText, anyJson),
	runAs: fc.oneof(fc.constantFrom(null, "nobody", "root", "0", "daemon", "x;rm -rf /"), anyText, anyJson),
	timeout: fc.oneof(fc.constantFrom(null, 1, 30, 86_400, 86_401, 0, -1, 1.5, 1e20, "30"), anyJson),
	recurring: fc.oneof(fc.boolean(), anyJson),
	concurrency: fc.oneof(fc.constantFrom("allow", "forbid", "replace"), anyText, anyJson),
	// Never a valid count above 0: a failed manual run is not retried behind the next request's back.
	retries: fc.oneof(fc.constantFrom(0, -1, 11, 1.5, 1e20, "1"), anyJson).filter((v) => !(typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 10)),
	misfire: fc.oneof(fc.constantFrom("run_once", "run_all", "skip"), anyText, anyJson),
	startingDeadline: fc.oneof(fc.constantFrom(null, 1, 60, 0, -1, 2_678_401, 1e20), anyJson),
	env: fc.oneof(
		fc.dictionary(
			fc.oneof(fc.constantFrom("A", "PATH_X", "CRONJOB_X", "cronjob_y", "__proto__", "1BAD", "BAD-NAME", ""), anyText),
			fc.oneof(fc.string({ maxLength: 20 }), anyText, anyJson),
			{
				maxKeys: 4,
			},
		),
		anyJson,
	),
	suspended: fc.oneof(fc.boolean(), anyJson),
};

/** A body of job fields (any subset) and sometimes unknown keys. */
const jobBody = fc
	.tuple(fc.record(jobFields, { requiredKeys: [] }), fc.dictionary(anyText, anyJson, { maxKeys: 2 }), fc.boolean())
	.map(([fields, extra, withExtra]) => (withExtra ? { ...extra, ...fields } : fields));

/** A valid patch now and then (any subset of these, at least one), so PATCH also gets past the validation. */
const validPatch = fc
	.record(
		{
			schedule: fc.constantFrom(...QUIET_SCHEDULES),
			name: fc.oneof(
				fc.constant(null),
				fc.string({ maxLength: 30 }).filter((n) => [...n].every((c) => c >= " " && c !== "\u007f")),
			),
			timezone: fc.constantFrom("UTC", "Europe/Berlin"),
			timeout: fc.oneof(fc.constant(null), fc.integer({ min: 1, max: 86_400 })),
			suspended: fc.boolean(),
			concurrency: fc.constantFrom("allow", "forbid", "replace"),
			env: fc.dictionary(fc.constantFrom("A", "B_2", "_C"), fc.string({ maxLength: 10 }), { maxKeys: 2 }),
		},
		{ requiredKeys: [] },
	)
	.filter((b) => Object.keys(b).length > 0);

/** A complete, valid create body now and then, so the fuzz also gets past the validation. */
const validJob = fc.record({
	type: fc.constant("command"),
	executable: fc.constantFrom("true", "echo fuzz"),
	schedule: fc.constantFrom(...QUIET_SCHEDULES),
	timezone: fc.constantFrom("UTC", "Europe/Berlin"),
	suspended: fc.boolean(),
});

/** A JSON value on the wire: plain, gzip, deflate, mislabelled (the header says gzip, the bytes are not), unknown encodings and charsets, garbage. */
function wire(value: fc.Arbitrary<unknown>): fc.Arbitrary<{ headers: Record<string, string>; body: Buffer | undefined }> {
	const json = (v: unknown) => Buffer.from(JSON.stringify(v) ?? "null", "utf8");
	const ct = { "content-type": "application/json" };
	return fc.oneof(
		{ weight: 14, arbitrary: value.map((v) => ({ headers: ct, body: json(v) })) },
		value.map((v) => ({ headers: { ...ct, "content-encoding": "gzip" }, body: zlib.gzipSync(json(v)) })),
		value.map((v) => ({ headers: { ...ct, "content-encoding": "deflate" }, body: zlib.deflateSync(json(v)) })),
		fc
			.tuple(value, fc.constantFrom("gzip", "deflate", "GZIP", "br", "x-unknown", "gzip, gzip", "identity", "compress", ""))
			.map(([v, e]) => ({ headers: { ...ct, "content-encoding": e }, body: json(v) })),
		value.map((v) => {
			const z = zlib.gzipSync(json(v));
			return { headers: { ...ct, "content-encoding": "gzip" }, body: z.subarray(0, Math.max(1, z.length - 6)) };
		}),
		fc
			.tuple(value, fc.constantFrom("utf-8", "UTF-16", "utf-16le", "latin1", "nope", "utf-7", "ascii"))
			.map(([v, cs]) => ({ headers: { "content-type": `application/json; charset=${cs}` }, body: json(v) })),
		fc
			.tuple(value, fc.constantFrom("text/plain", "application/x-www-form-urlencoded", "application/json-patch+json"))
			.map(([v, t]) => ({ headers: { "content-type": t }, body: json(v) })),
		fc.uint8Array({ maxLength: 64 }).map((b) => ({ headers: ct, body: Buffer.from(b) })),
		fc.constantFrom("{", "[1,", '"x"', "null", "1", "{}", "[]", '{"a":1}{', "\ufeff{}").map((t) => ({ headers: ct, body: Buffer.from(t, "utf8") })),
		fc.constant({ headers: {}, body: undefined }),
	);
}

/**
 * FUZZ_DATABASE_URL (a MySQL/MariaDB server, e.g. scripts/services.sh's DATABASE_URL): the same
 * properties on a fresh database there (`cronjob_test_fuzz_<pid>`, dropped afterwards), where the
 * columns' lengths hold (SQLite takes anything). Off by default.
 */
const FUZZ_DATABASE_URL = process.env.FUZZ_DATABASE_URL?.trim() || null;
let mysqlAdmin: mysql.Connection | null = null;
let mysqlDatabase: string | null = null;

async function databaseEnv(): Promise<Record<string, string>> {
	if (!FUZZ_DATABASE_URL) return {};
	const u = new URL(FUZZ_DATABASE_URL);
	mysqlAdmin = await mysql.createConnection({
		host: u.hostname,
		port: Number(u.port || 3306),
		user: decodeURIComponent(u.username),
		password: decodeURIComponent(u.password),
	});
	mysqlDatabase = `cronjob_test_fuzz_${process.pid}`;
	await mysqlAdmin.query(`CREATE DATABASE \`${mysqlDatabase}\``);
	u.pathname = `/${mysqlDatabase}`;
	return { DATABASE_URL: u.toString() };
}

beforeAll(async () => {
	node = await startNode(await databaseEnv());
	const jobsSvc = node.broker.getLocalService("jobs") as unknown as { adapter: { db: Sequelize } };
	const usersSvc = node.broker.getLocalService("users") as unknown as { adapter: { model: ModelStatic<Model> } };
	jobsDb = jobsSvc.adapter.db;
	usersModel = usersSvc.adapter.model;
	const mk = async (name: string) => {
		const r = await node.request("POST", "/users", { body: { name } });
		expect(r.status).toBe(201);
		return { id: r.body.id as string, token: r.body.token as string };
	};
	alice = await mk("fuzz-alice");
	bob = await mk("fuzz-bob");
	for (let i = 0; i < 3; i++) victims.push((await mk(`fuzz-victim-${i}`)).id);
	const job = { type: "command", executable: "true", schedule: QUIET_SCHEDULES[0] };
	sentinel = (await node.request("POST", "/jobs", { token: alice.token, body: job })).body.id;
	doomed = (await node.request("POST", "/jobs", { token: alice.token, body: job })).body.id;
	runner = (await node.request("POST", "/jobs", { token: alice.token, body: job })).body.id;
	for (const id of [sentinel, doomed, runner]) expect(id).toEqual(expect.any(String));
});

afterAll(async () => {
	await node?.stop();
	if (mysqlAdmin && mysqlDatabase) await mysqlAdmin.query(`DROP DATABASE IF EXISTS \`${mysqlDatabase}\``);
	await mysqlAdmin?.end();
});

beforeEach(() => {
	seen = {};
});

afterEach(() => {
	if (process.env.FUZZ_STATS) console.log(expect.getState().currentTestName, JSON.stringify(seen));
});

/** The property's requests got past the edge (2xx) and were refused (4xx), both. */
function expectBoth(): void {
	expect(seen["2xx"] ?? 0).toBeGreaterThan(0);
	expect(seen["4xx"] ?? 0).toBeGreaterThan(0);
}

describe("no request gets a 5xx; every 4xx names a field; refused requests change nothing", () => {
	it("POST /jobs", async () => {
		await fc.assert(
			fc.asyncProperty(authHeader(), wire(fc.oneof({ weight: 4, arbitrary: jobBody }, { weight: 2, arbitrary: validJob }, anyJson)), async (auth, w) => {
				await probe({ method: "POST", path: "/jobs", headers: headersOf(auth, w.headers), body: w.body });
			}),
			PARAMS,
		);
		expectBoth();
	});

	it("PATCH /jobs/{id}", async () => {
		await fc.assert(
			fc.asyncProperty(
				authHeader(),
				idSegment(() => [sentinel, doomed]),
				wire(fc.oneof({ weight: 4, arbitrary: jobBody }, { weight: 3, arbitrary: validPatch }, anyJson)),
				async (auth, id, w) => {
					await probe({ method: "PATCH", path: `/jobs/${id}`, headers: headersOf(auth, w.headers), body: w.body });
				},
			),
			PARAMS,
		);
		expectBoth();
	});

	it("GET and DELETE /jobs/{id} and its sub-routes", async () => {
		const route = fc.constantFrom(["GET", ""], ["DELETE", ""], ["POST", "/run"], ["GET", "/runs"], ["GET", "/executable"]);
		await fc.assert(
			fc.asyncProperty(
				authHeader(),
				route,
				idSegment(() => [sentinel, doomed, runner]),
				queryPairs({ limit: numberText, offset: numberText }),
				wire(anyJson),
				async (auth, [method, sub], id, q, w) => {
					// Only the doomed job may be deleted, only the runner run.
					const known = [sentinel, doomed, runner].map(enc);
					const target = !known.includes(id) ? id : method === "DELETE" ? enc(doomed) : sub === "/run" ? enc(runner) : id;
					await probe({ method, path: `/jobs/${target}${sub}${query(q)}`, headers: headersOf(auth, w.headers), body: w.body });
				},
			),
			PARAMS,
		);
		expectBoth();
	});

	it("GET /jobs (paging and status)", async () => {
		const status = fc.oneof(fc.constantFrom("scheduled", "finished", "error", "running", ""), anyText);
		await fc.assert(
			fc.asyncProperty(authHeader(), queryPairs({ limit: numberText, offset: numberText, status }), wire(anyJson), async (auth, q, w) => {
				await probe({ method: "GET", path: `/jobs${query(q)}`, headers: headersOf(auth, w.headers), body: w.body });
			}),
			PARAMS,
		);
		expectBoth();
	});

	it("GET /schedule/preview", async () => {
		const from = fc.oneof(
			{
				weight: 4,
				arbitrary: fc.date({ min: new Date("1970-01-01T00:00:00Z"), max: new Date("2999-12-31T23:59:59Z"), noInvalidDate: true }).map((d) => d.toISOString()),
			},
			fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true }).map((d) => d.toISOString()),
			fc.date({ min: new Date("1969-01-01T00:00:00Z"), max: new Date("3001-01-01T00:00:00Z"), noInvalidDate: true }).map((d) => d.toISOString()),
			fc.constantFrom(
				"-271821-04-20T00:00:00Z",
				"+275760-09-13T00:00:00Z",
				"1969-12-31T23:59:59Z",
				"1970-01-01T00:00:00Z",
				"2999-12-31T23:59:59Z",
				"3000-01-01T00:00:00Z",
				"now",
				"1e20",
				"",
			),
			anyText,
		);
		const schedule = fc.oneof(
			{ weight: 4, arbitrary: fc.constantFrom("* * * * *", "*/5 * * * * *", "@hourly", "0 0 29 2 *", "30 2 * * *", "0 0 * * FRI-SUN", "0 0 13 * 5") },
			withControl(fc.constantFrom("* * * * *", "@daily")),
			scheduleArb.map(String),
		);
		const timezone = fc.oneof(
			{ weight: 4, arbitrary: fc.constantFrom("UTC", "utc", "America/New_York", "Europe/London", "Pacific/Kiritimati", "Etc/GMT+12", "Australia/Lord_Howe") },
			fc.constantFrom("Nowhere", "UTC\n", "../etc"),
			anyText,
		);
		const count = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 100 }).map(String) }, fc.constantFrom("101", "0"), numberText);
		// Mostly a schedule and some of the others, as a client sends them; sometimes any pairs at all.
		const pairs = fc.oneof(
			{
				weight: 4,
				arbitrary: fc
					.tuple(schedule, fc.record({ from, timezone, count }, { requiredKeys: [] }))
					.map(([sch, rest]): [string, string][] => [["schedule", sch], ...Object.entries(rest)]),
			},
			queryPairs({ schedule, from, timezone, count }),
		);
		await fc.assert(
			fc.asyncProperty(authHeader(), pairs, async (auth, q) => {
				await probe({ method: "GET", path: `/schedule/preview${query(q)}`, headers: headersOf(auth) });
			}),
			PARAMS,
		);
		expectBoth();
	});

	it("POST /users, GET /users, DELETE /users/{id}, GET /workers, GET /health", async () => {
		let n = 0;
		const userBody = fc.oneof(
			fc.record(
				{
					name: fc.oneof(
						{ weight: 4, arbitrary: fc.constant(null).map(() => `fuzz-u${n++}`) },
						fc.constantFrom("", "admin", "fuzz-alice", "a b", "ü", "x".repeat(65)),
						anyText,
						anyJson,
					),
					admin: fc.oneof(fc.boolean(), anyJson),
				},
				{ requiredKeys: [] },
			),
			fc
				.tuple(fc.constant(`fuzz-x`), fc.dictionary(anyText, anyJson, { minKeys: 1, maxKeys: 2 }))
				.map(([name, extra]) => ({ ...extra, name: `${name}${n++}` })),
			anyJson,
		);
		const req = fc.oneof(
			fc.tuple(authHeader(), wire(userBody)).map(([auth, w]): Req => ({ method: "POST", path: "/users", headers: headersOf(auth, w.headers), body: w.body })),
			fc
				.tuple(
					authHeader(),
					idSegment(() => [...victims, "admin"]),
				)
				.map(([auth, id]): Req => ({ method: "DELETE", path: `/users/${id}`, headers: headersOf(auth) })),
			fc
				.tuple(authHeader(), fc.constantFrom("/users", "/workers", "/health"), queryPairs({ x: anyText }))
				.map(([auth, p, q]): Req => ({ method: "GET", path: `${p}${query(q)}`, headers: headersOf(auth) })),
		);
		await fc.assert(
			fc.asyncProperty(req, async (r) => {
				await probe(r);
			}),
			PARAMS,
		);
		expectBoth();
	});

	it("OPTIONS on any path runs no action: a preflight (204), 403 naming origin, or 404 naming path", async () => {
		const path = fc.oneof(
			idSegment(() => [sentinel, doomed]).chain((id) =>
				fc.constantFrom(`/jobs/${id}`, `/jobs/${id}/run`, `/jobs/${id}/runs`, `/jobs/${id}/executable`, `/users/${id}`),
			),
			fc.constantFrom("/jobs", "/users", "/workers", "/health", "/schedule/preview?schedule=*", "/", "/nope", "/jobs/"),
		);
		const headers = fc.record(
			{
				authorization: tokenValid().map((t) => `Bearer ${t}`),
				"access-control-request-method": fc.constantFrom("GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS", "get", "x"),
				"access-control-request-headers": fc.constantFrom("authorization", "content-type", "x-custom"),
				origin: fc.constantFrom("https://evil.example", "null", "http://127.0.0.1"),
			},
			{ requiredKeys: [] },
		);
		await fc.assert(
			fc.asyncProperty(path, headers, wire(anyJson), async (p, h, w) => {
				const res = await probe({ method: "OPTIONS", path: p, headers: { ...w.headers, ...h }, body: w.body });
				expect([204, 403, 404]).toContain(res.status);
				if (res.status === 204) expect(res.text).toBe("");
				if (res.status === 403) expect(res.body.data.field).toBe("origin");
			}),
			PARAMS,
		);
		expectBoth();
	});

	it("a token that is not valid, of any length, is a 401 naming authorization on every route", async () => {
		const routes: [string, string][] = [
			["GET", "/jobs"],
			["POST", "/jobs"],
			["GET", "/jobs/{id}"],
			["PATCH", "/jobs/{id}"],
			["DELETE", "/jobs/{id}"],
			["POST", "/jobs/{id}/run"],
			["GET", "/jobs/{id}/runs"],
			["GET", "/jobs/{id}/executable"],
			["GET", "/schedule/preview?schedule=*%20*%20*%20*%20*"],
			["GET", "/workers"],
			["POST", "/users"],
			["GET", "/users"],
			["DELETE", "/users/{uid}"],
		];
		await fc.assert(
			fc.asyncProperty(fc.constantFrom(...routes), invalidAuth(), async ([method, p], auth) => {
				const path = p.replace("{id}", sentinel).replace("{uid}", victims[0]);
				const body = method === "POST" || method === "PATCH" ? Buffer.from("{}") : undefined;
				const res = await probe({ method, path, headers: { authorization: auth, ...(body ? { "content-type": "application/json" } : {}) }, body });
				expect(res.status).toBe(401);
				expect(res.body.data.field).toBe("authorization");
			}),
			PARAMS,
		);
		expect(seen["4xx"]).toBe(RUNS);
	});
});
