/**
 * The REST API's edge, case by case, on a real node (SQLite, its own data folder): the inputs that
 * got a 5xx, were stored, or ran an action they should not have (issue 9), each answered with a
 * 4xx naming the field and changing nothing; and CORS, off by default and on with
 * CRONJOB_CORS_ORIGINS. test/integration/api-fuzz.test.ts generates such requests; these are the
 * measured ones, kept as plain regressions.
 */
import * as zlib from "node:zlib";
import { ADMIN_TOKEN, startNode, type TestNode } from "../support/node";
import { rawRequest, type RawAnswer } from "../support/raw-http";

let node: TestNode;
let alice: { id: string; token: string };
let job: string;

const body = { type: "command", executable: "true", schedule: "0 0 29 2 *" };

/** Any method, header and body (bytes, or on OPTIONS) as given. */
function send(n: TestNode, method: string, path: string, headers: Record<string, string> = {}, data?: Buffer): Promise<RawAnswer> {
	return rawRequest(n.url, method, path, headers, data);
}

async function jobsCount(): Promise<number> {
	return ((await node.request("GET", "/jobs?limit=1000")).body as unknown[]).length;
}

/** The job as the API shows it, but for `worker` (the manager writes it behind its reconciles). */
async function jobRow(id: string) {
	const res = await node.request("GET", `/jobs/${id}`);
	expect(res.status).toBe(200);
	const { worker: _worker, ...rest } = res.body as { worker: unknown; updatedAt: string; status: string; schedule: string };
	return rest;
}

beforeAll(async () => {
	node = await startNode();
	const a = await node.request("POST", "/users", { body: { name: "edge-alice" } });
	alice = { id: a.body.id, token: a.body.token };
	job = (await node.request("POST", "/jobs", { token: alice.token, body })).body.id;
	expect(job).toEqual(expect.any(String));
});

afterAll(async () => {
	await node?.stop();
});

describe("a NUL byte in a path id is a 422 naming id (the SQLite driver cut the query at it: 500)", () => {
	it.each([
		["GET", "/jobs/%00"],
		["PATCH", "/jobs/%00"],
		["DELETE", "/jobs/%00"],
		["DELETE", "/users/%00"],
	])("%s %s", async (method, path) => {
		const res = await node.request(method, path, { body: method === "PATCH" ? { name: "x" } : undefined });
		expect(res.status).toBe(422);
		expect(res.body.data.field).toBe("id");
	});

	it.each([
		["GET", ""],
		["PATCH", ""],
		["DELETE", ""],
		["POST", "/run"],
		["GET", "/runs"],
		["GET", "/executable"],
	])("%s /jobs/<id>%%00%s leaves the job alone", async (method, sub) => {
		const before = await jobRow(job);
		const res = await node.request(method, `/jobs/${job}%00${sub}`, { token: alice.token, body: method === "PATCH" ? { name: "x" } : undefined });
		expect(res.status).toBe(422);
		expect(res.body.data.field).toBe("id");
		expect(await jobRow(job)).toEqual(before);
		expect(((await node.request("GET", `/jobs/${job}/runs`)).body as unknown[]).length).toBe(0);
	});

	it("other control characters and overlong ids alike; an unknown well-formed id stays a 404", async () => {
		for (const id of ["%0A", `${job}%0D%0A`, "%7F", "a%20b", "x".repeat(65)]) {
			const res = await node.request("GET", `/jobs/${id}`);
			expect([res.status, res.body.data.field]).toEqual([422, "id"]);
		}
		const unknown = await node.request("GET", "/jobs/does-not-exist");
		expect([unknown.status, unknown.body.data.field]).toEqual([404, "id"]);
		const undecodable = await node.request("GET", "/jobs/%E0%A4%A");
		expect([undecodable.status, undecodable.body.data.field]).toEqual([400, "path"]);
	});
});

describe("paging is bounded (an offset past 64 bits was a datatype mismatch: 500)", () => {
	it.each(["1e20", "99999999999999999999", "2147483648", "-1", "1.5"])("offset=%s is a 422 naming offset", async (offset) => {
		for (const path of ["/jobs", `/jobs/${job}/runs`]) {
			const res = await node.request("GET", `${path}?offset=${offset}`);
			expect(res.status).toBe(422);
			expect(res.body.data.field).toBe("offset");
		}
	});

	it("the largest offset is answered (an empty page)", async () => {
		for (const path of ["/jobs", `/jobs/${job}/runs`]) {
			const res = await node.request("GET", `${path}?offset=2147483647&limit=1000`);
			expect(res.status).toBe(200);
			expect(res.body).toEqual([]);
		}
	});
});

describe("GET /schedule/preview: from within the supported years (year -271821 was a TypeError in croner: 500)", () => {
	const preview = (from: string, tz = "UTC") =>
		node.request("GET", `/schedule/preview?schedule=${encodeURIComponent("* * * * *")}&count=2&timezone=${tz}&from=${encodeURIComponent(from)}`);

	it.each(["-271821-04-20T00:00:00Z", "+275760-09-13T00:00:00Z", "1969-12-31T23:59:59Z", "3000-01-01T00:00:00Z"])(
		"from=%s is a 422 naming from",
		async (from) => {
			const res = await preview(from);
			expect(res.status).toBe(422);
			expect(res.body.data.field).toBe("from");
		},
	);

	it("the first and the last supported instants are answered", async () => {
		expect((await preview("1970-01-01T00:00:00Z", "Pacific/Kiritimati")).body.next).toEqual(["1970-01-01T00:01:00.000Z", "1970-01-01T00:02:00.000Z"]);
		expect((await preview("1970-01-01T00:00:00Z", "America/New_York")).body.next).toEqual(["1970-01-01T00:01:00.000Z", "1970-01-01T00:02:00.000Z"]);
		const last = await preview("2999-12-31T23:58:00Z");
		expect(last.status).toBe(200);
		expect(last.body.next[0]).toBe("2999-12-31T23:59:00.000Z");
	});
});

describe("Content-Encoding", () => {
	const post = (encoding: string, data: Buffer, headers: Record<string, string> = {}) =>
		send(node, "POST", "/jobs", { authorization: `Bearer ${alice.token}`, "content-type": "application/json", "content-encoding": encoding, ...headers }, data);

	it("a body labelled gzip that is not gzip is a 400 naming body (it was a 500), and nothing is stored", async () => {
		const before = await jobsCount();
		const res = await post("gzip", Buffer.from(JSON.stringify(body)));
		expect(res.status).toBe(400);
		expect(res.body).toMatchObject({ code: 400, type: "BAD_REQUEST", data: { field: "body" } });
		expect(res.body.message).toMatch(/gzip/);
		const cut = zlib.gzipSync(Buffer.from(JSON.stringify(body)));
		expect((await post("gzip", cut.subarray(0, cut.length - 6))).body.data.field).toBe("body");
		expect((await post("deflate", Buffer.from("{}"))).body.data.field).toBe("body");
		expect(await jobsCount()).toBe(before);
	});

	it("an encoding we do not read is a 415 naming content-encoding; a charset, naming content-type", async () => {
		for (const e of ["br", "x-unknown", "gzip, gzip"]) {
			const res = await post(e, Buffer.from(JSON.stringify(body)));
			expect(res.status).toBe(415);
			expect(res.body).toMatchObject({ type: "UNSUPPORTED_MEDIA_TYPE", data: { field: "content-encoding" } });
		}
		const cs = await post("identity", Buffer.from(JSON.stringify(body)), { "content-type": "application/json; charset=nope" });
		expect([cs.status, cs.body.data.field]).toEqual([415, "content-type"]);
	});

	it("gzip and deflate bodies that are what they say are read", async () => {
		const gz = await post("gzip", zlib.gzipSync(Buffer.from(JSON.stringify(body))));
		expect(gz.status).toBe(201);
		const df = await post("deflate", zlib.deflateSync(Buffer.from(JSON.stringify(body))));
		expect(df.status).toBe(201);
		for (const id of [gz.body.id, df.body.id]) await node.request("DELETE", `/jobs/${id}`);
	});
});

describe("a schedule with a newline or another control character is refused, not stored", () => {
	it.each(["*\n* * * *", "0 0 29 2 *\n", "\r\n0 0 29 2 *", "0 0 29\u000b2 *", "0 0 29 2\u00a0*", "0 0 29 2 *\u0000", "0\u20280 29 2 *"])(
		"%j",
		async (schedule) => {
			const before = await jobsCount();
			const created = await node.request("POST", "/jobs", { token: alice.token, body: { ...body, schedule } });
			expect(created.status).toBe(422);
			expect(created.body.data.field).toBe("schedule");
			expect(await jobsCount()).toBe(before);

			const row = await jobRow(job);
			const patched = await node.request("PATCH", `/jobs/${job}`, { token: alice.token, body: { schedule } });
			expect(patched.status).toBe(422);
			expect(patched.body.data.field).toBe("schedule");
			expect(await jobRow(job)).toEqual(row);

			const preview = await node.request("GET", `/schedule/preview?schedule=${encodeURIComponent(schedule)}`);
			expect(preview.status).toBe(422);
			expect(preview.body.data.field).toBe("schedule");
		},
	);

	it("a job stored with one before (a newline between fields) is still read and shown", async () => {
		const id = (await node.request("POST", "/jobs", { token: alice.token, body })).body.id as string;
		const jobs = node.broker.getLocalService("jobs") as unknown as { adapter: { model: { update(v: object, o: object): Promise<unknown> } } };
		await jobs.adapter.model.update({ schedule: "0 0 29\n2 *" }, { where: { id } });
		const res = await node.request("GET", `/jobs/${id}`, { token: alice.token });
		expect(res.body.schedule).toBe("0 0 29\n2 *");
		expect(res.body.nextRunAt).toBe("2028-02-29T00:00:00.000Z");
		await node.request("DELETE", `/jobs/${id}`);
	});

	it("tabs still separate fields", async () => {
		const res = await node.request("GET", `/schedule/preview?schedule=${encodeURIComponent("0\t0 29 2 *")}&from=2025-01-01T00:00:00Z&count=1`);
		expect(res.status).toBe(200);
		expect(res.body.next).toEqual(["2028-02-29T00:00:00.000Z"]);
	});
});

describe("tokens", () => {
	it.each([513, 600, 4096, 15_000])("a bearer token of %i characters is a 401 (it was a 422 'token field length')", async (n) => {
		const res = await node.request("GET", "/jobs", { token: "a".repeat(n) });
		expect(res.status).toBe(401);
		expect(res.body.data.field).toBe("authorization");
	});

	it("headers over Node's limit (16 KiB) are a 431 naming headers, in the API's error shape", async () => {
		const res = await node.request("GET", "/jobs", { token: "a".repeat(20_000) });
		expect(res.status).toBe(431);
		expect(res.body).toMatchObject({ code: 431, data: { field: "headers" } });
	});

	it("a 403 for what the caller may not do names authorization", async () => {
		const res = await node.request("GET", "/users", { token: alice.token });
		expect(res.status).toBe(403);
		expect(res.body.data.field).toBe("authorization");
	});
});

describe("OPTIONS answers a preflight and runs no action", () => {
	it("OPTIONS /jobs/{id} with Access-Control-Request-Method: DELETE and the owner's token does not delete the job", async () => {
		const before = await jobRow(job);
		const res = await send(node, "OPTIONS", `/jobs/${job}`, { authorization: `Bearer ${alice.token}`, "access-control-request-method": "DELETE" });
		expect(res.status).toBe(204);
		expect(res.text).toBe("");
		expect(res.headers.allow).toBe("GET, PATCH, DELETE, OPTIONS");
		expect(await jobRow(job)).toEqual(before);
		expect(before.status).toBe("scheduled");
	});

	it("without the header it is no GET either; POST /jobs/{id}/run is not run", async () => {
		const get = await send(node, "OPTIONS", `/jobs/${job}`, { authorization: `Bearer ${alice.token}` });
		expect([get.status, get.text]).toEqual([204, ""]);
		const run = await send(node, "OPTIONS", `/jobs/${job}/run`, { authorization: `Bearer ${alice.token}`, "access-control-request-method": "POST" });
		expect(run.status).toBe(204);
		expect(run.headers.allow).toBe("POST, OPTIONS");
		expect(((await node.request("GET", `/jobs/${job}/runs`)).body as unknown[]).length).toBe(0);
		const users = await send(
			node,
			"OPTIONS",
			"/users",
			{ authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json", "access-control-request-method": "POST" },
			Buffer.from('{"name":"edge-eve"}'),
		);
		expect(users.status).toBe(204);
		expect(((await node.request("GET", "/users")).body as { name: string }[]).map((u) => u.name)).not.toContain("edge-eve");
	});

	it("CORS is off by default: a preflight from any origin is a 403 naming origin; no path, a 404 naming path", async () => {
		const res = await send(node, "OPTIONS", `/jobs/${job}`, { origin: "https://app.example.com", "access-control-request-method": "DELETE" });
		expect(res.status).toBe(403);
		expect(res.body.data.field).toBe("origin");
		expect(res.headers["access-control-allow-origin"]).toBeUndefined();
		const nowhere = await send(node, "OPTIONS", "/nope", { "access-control-request-method": "GET" });
		expect([nowhere.status, nowhere.body.data.field]).toEqual([404, "path"]);
		// Actual requests carry no CORS headers.
		const get = await send(node, "GET", `/jobs/${job}`, { authorization: `Bearer ${alice.token}`, origin: "https://app.example.com" });
		expect(get.status).toBe(200);
		expect(get.headers["access-control-allow-origin"]).toBeUndefined();
	});
});

describe("POST /users with an unknown key", () => {
	it("is a 422 naming the key (data.field was null)", async () => {
		const res = await node.request("POST", "/users", { body: { name: "edge-bob", bogus: 1 } });
		expect(res.status).toBe(422);
		expect(res.body.data.field).toBe("bogus");
		expect(((await node.request("GET", "/users")).body as { name: string }[]).map((u) => u.name)).not.toContain("edge-bob");
	});
});

describe("unknown routes", () => {
	it("a path that is no route is a 404 naming path", async () => {
		for (const [method, path] of [
			["GET", "/nope"],
			["DELETE", "/jobs"],
			["PUT", `/jobs/${job}`],
			["HEAD", "/jobs"],
		]) {
			const res = await node.request(method, path);
			expect(res.status).toBe(404);
			if (method !== "HEAD") expect(res.body.data.field).toBe("path");
		}
	});
});

describe("CORS with CRONJOB_CORS_ORIGINS", () => {
	let cors: TestNode;
	beforeAll(async () => {
		cors = await startNode({ CRONJOB_CORS_ORIGINS: "https://app.example.com, https://*.tools.example.com" });
	});
	afterAll(async () => {
		await cors?.stop();
	});

	it("a preflight from an allowed origin gets the CORS headers and the path's methods", async () => {
		for (const origin of ["https://app.example.com", "https://a.b.tools.example.com"]) {
			const res = await send(cors, "OPTIONS", "/jobs/some-id", {
				origin,
				"access-control-request-method": "PATCH",
				"access-control-request-headers": "authorization, content-type",
			});
			expect(res.status).toBe(204);
			expect(res.headers).toMatchObject({
				"access-control-allow-origin": origin,
				"access-control-allow-methods": "GET, PATCH, DELETE",
				"access-control-allow-headers": "Authorization, Content-Type, Content-Encoding",
				"access-control-max-age": "600",
				vary: "Origin",
			});
		}
	});

	it("another origin: a 403 naming origin, for the preflight and the request", async () => {
		for (const origin of ["https://evil.example.com", "https://app.example.com.evil.com", "null"]) {
			const pre = await send(cors, "OPTIONS", "/jobs", { origin, "access-control-request-method": "POST" });
			expect([pre.status, pre.body.data.field]).toEqual([403, "origin"]);
			const get = await send(cors, "GET", "/jobs", { origin, authorization: `Bearer ${cors.config.adminToken}` });
			expect([get.status, get.body.data.field]).toEqual([403, "origin"]);
		}
	});

	it("an allowed origin's requests answer with Access-Control-Allow-Origin and the exposed headers", async () => {
		const res = await send(cors, "GET", "/jobs", { origin: "https://app.example.com", authorization: `Bearer ${cors.config.adminToken}` });
		expect(res.status).toBe(200);
		expect(res.headers["access-control-allow-origin"]).toBe("https://app.example.com");
		expect(res.headers["access-control-expose-headers"]).toBe("Location, Content-Disposition, X-Content-SHA256");
		// Without an Origin (not a browser), as before.
		expect((await cors.request("GET", "/jobs")).status).toBe(200);
	});
});
