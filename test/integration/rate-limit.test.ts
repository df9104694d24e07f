/**
 * Rate limiting on the gateway (a real node, the embedded default): requests per token and per
 * address answer 429 with Retry-After past their bucket; failed authentications from an address are
 * limited harder, and once past it even a valid token from that address waits; other addresses are
 * not affected (X-Forwarded-For with CRONJOB_TRUST_PROXY, as behind HAProxy).
 */
import { ADMIN_TOKEN, startNode, type TestNode } from "../support/node";

describe("rate limits", () => {
	let node: TestNode;
	afterEach(async () => {
		await node?.stop();
	});

	const from = (address: string) => ({ "x-forwarded-for": address });

	test("per token: a burst, then 429 with Retry-After naming the field; health is never limited", async () => {
		node = await startNode({ CRONJOB_RATE_LIMIT: "1:3", CRONJOB_TRUST_PROXY: "1" });
		// A token of its own (startNode's readiness poll used the admin's).
		const admin = { user: { id: "admin", name: "admin", admin: true } };
		const { token } = await node.broker.call<{ token: string }, { name: string }>("users.createUser", { name: "limited" }, { meta: admin });
		const statuses: number[] = [];
		for (let i = 0; i < 4; i++) statuses.push((await node.request("GET", "/jobs", { token, headers: from(`10.0.0.${i}`) })).status);
		expect(statuses).toEqual([200, 200, 200, 429]);
		const limited = await node.request("GET", "/jobs", { token, headers: from("10.0.1.1") });
		expect(limited.status).toBe(429);
		expect(Number(limited.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
		expect(limited.body).toMatchObject({ type: "RATE_LIMITED", data: { field: "authorization" } });
		for (let i = 0; i < 5; i++) expect((await node.request("GET", "/health", { token: null })).status).toBe(200);
	});

	test("per address: one address past its bucket, another untouched", async () => {
		node = await startNode({ CRONJOB_RATE_LIMIT_ADDRESS: "1:2", CRONJOB_TRUST_PROXY: "1" });
		const a = [];
		for (let i = 0; i < 3; i++) a.push((await node.request("GET", "/jobs", { headers: from("10.1.0.1") })).status);
		expect(a).toEqual([200, 200, 429]);
		expect((await node.request("GET", "/jobs", { headers: from("10.1.0.2") })).status).toBe(200);
	});

	test("failed authentications: 401 up to the bucket, then 429 for that address even with a valid token", async () => {
		node = await startNode({ CRONJOB_AUTH_FAIL_LIMIT: "0.01:3", CRONJOB_TRUST_PROXY: "1" });
		const wrong = [];
		for (let i = 0; i < 3; i++) wrong.push((await node.request("GET", "/jobs", { token: `wrong-${i}`, headers: from("10.2.0.1") })).status);
		expect(wrong).toEqual([401, 401, 401]);
		const after = await node.request("GET", "/jobs", { token: ADMIN_TOKEN, headers: from("10.2.0.1") });
		expect(after.status).toBe(429);
		expect(Number(after.headers.get("retry-after"))).toBeGreaterThan(60);
		expect((await node.request("GET", "/jobs", { token: ADMIN_TOKEN, headers: from("10.2.0.2") })).status).toBe(200);
	});

	test("without CRONJOB_TRUST_PROXY the header is ignored: the socket's address counts", async () => {
		node = await startNode({ CRONJOB_RATE_LIMIT_ADDRESS: "1:2" });
		// Each request names another address; all come from 127.0.0.1, whose bucket of 2 runs out.
		const s = [];
		for (let i = 0; i < 4; i++) s.push((await node.request("GET", "/jobs", { headers: from(`10.3.0.${i}`) })).status);
		expect(s.filter((x) => x === 429).length).toBeGreaterThanOrEqual(2);
	});
});
