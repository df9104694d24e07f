/**
 * A job's secretEnv end to end on the embedded default (a real node, SQLite, its own data folder):
 * masked in every answer, refused where it would be ambiguous, in the job's environment when it
 * runs, absent from the data folder's raw bytes and from the logs; the key rotated and the values
 * re-sealed with the new one.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { SECRET_MASK } from "../../lib/core/job-schema";
import { startNode, tempDir, type TestNode } from "../support/node";
import { waitFor } from "../support/wait";

const MARKER = `marker-${process.pid}-${Date.now().toString(36)}-secret`;
// The job compares a digest of the value (the command line is stored and answered as it is).
const DIGEST = createHash("sha256").update(MARKER).digest("hex");
const CHECK = `[ "$(printf %s "$TOKEN" | sha256sum | cut -c1-64)" = "${DIGEST}" ] && [ "$PLAIN" = p ] && echo SECRET-OK || echo SECRET-MISSING`;

/** Every file under `dir`, read raw. */
function filesContaining(dir: string, needle: string): string[] {
	const hits: string[] = [];
	const walk = (d: string) => {
		for (const e of fs.readdirSync(d, { withFileTypes: true })) {
			const p = path.join(d, e.name);
			if (e.isDirectory()) walk(p);
			else if (e.isFile() && fs.readFileSync(p).includes(needle)) hits.push(p);
		}
	};
	walk(dir);
	return hits;
}

describe("secretEnv", () => {
	const dataDir = tempDir();
	const logged: string[] = [];
	let node: TestNode;
	const spies: jest.SpyInstance[] = [];

	beforeAll(() => {
		const keep = (chunk: unknown) => logged.push(String(chunk));
		spies.push(jest.spyOn(process.stdout, "write").mockImplementation((c: unknown) => (keep(c), true)));
		spies.push(jest.spyOn(process.stderr, "write").mockImplementation((c: unknown) => (keep(c), true)));
		for (const m of ["log", "info", "warn", "error", "debug"] as const)
			spies.push(jest.spyOn(console, m).mockImplementation((...a: unknown[]) => keep(a.join(" "))));
	});
	afterAll(async () => {
		await node?.stop();
		for (const s of spies) s.mockRestore();
		fs.rmSync(dataDir, { recursive: true, force: true });
	});

	async function runOnce(id: string): Promise<string> {
		const before = ((await node.request("GET", `/jobs/${id}/runs`)).body as unknown[]).length;
		expect((await node.request("POST", `/jobs/${id}/run`)).status).toBe(202);
		let output = "";
		await waitFor(
			async () => {
				const runs = (await node.request("GET", `/jobs/${id}/runs`)).body as { status: string; output: string }[];
				const last = runs[0];
				if (runs.length <= before || last.status === "running") return false;
				output = last.output;
				return true;
			},
			20_000,
			"the manual run's result",
		);
		return output;
	}

	let id = "";

	test("masked in every answer; in the job's environment when it runs", async () => {
		// Debug logging: the request and action logs must not carry the value either.
		node = await startNode({ CRONJOB_DATA_DIR: dataDir, LOG_LEVEL: "debug" });
		const created = await node.request("POST", "/jobs", {
			body: { type: "command", executable: CHECK, schedule: "0 0 1 1 *", env: { PLAIN: "p" }, secretEnv: { TOKEN: MARKER } },
		});
		expect(created.status).toBe(201);
		id = (created.body as { id: string }).id;
		expect((created.body as { secretEnv: unknown }).secretEnv).toEqual({ TOKEN: SECRET_MASK });
		for (const p of [`/jobs/${id}`, "/jobs"]) {
			const res = await node.request("GET", p);
			expect(res.status).toBe(200);
			expect(JSON.stringify(res.body)).not.toContain(MARKER);
			expect(JSON.stringify(res.body)).toContain(`"TOKEN":"${SECRET_MASK}"`);
		}
		await waitFor(async () => (await node.request("GET", `/jobs/${id}`)).body?.worker !== null, 10_000, "the job assigned");
		expect(await runOnce(id)).toBe("SECRET-OK\n");
	});

	test("a patch that sends the mask back keeps the value; the mask alone on create, or a key in both maps, is a 422 naming secretEnv", async () => {
		const kept = await node.request("PATCH", `/jobs/${id}`, { body: { secretEnv: { TOKEN: SECRET_MASK, OTHER: "x" } } });
		expect(kept.status).toBe(200);
		expect((kept.body as { secretEnv: unknown }).secretEnv).toEqual({ TOKEN: SECRET_MASK, OTHER: SECRET_MASK });
		expect(await runOnce(id)).toBe("SECRET-OK\n");
		const both = await node.request("PATCH", `/jobs/${id}`, { body: { env: { PLAIN: "p", TOKEN: "plain" } } });
		expect(both.status).toBe(422);
		expect(both.body.data.field).toBe("secretEnv");
		const masked = await node.request("POST", "/jobs", { body: { type: "command", executable: "true", schedule: "0 0 1 1 *", secretEnv: { A: SECRET_MASK } } });
		expect(masked.status).toBe(422);
		expect(masked.body.data.field).toBe("secretEnv");
	});

	test("the value is in no file of the data folder (database, WAL, outbox, key file aside) and in no log line", async () => {
		await node.stop(); // the WAL checkpointed or not, every byte on disk
		expect(filesContaining(dataDir, MARKER)).toEqual([]);
		expect(fs.statSync(path.join(dataDir, "secret-key")).mode & 0o777).toBe(0o600);
		expect(logged.join("\n")).not.toContain(MARKER);
		expect(logged.length).toBeGreaterThan(0);
	});

	test("rotation: the new key with the old one as previous re-seals every value; then the new key alone opens them", async () => {
		const oldKey = fs.readFileSync(path.join(dataDir, "secret-key"), "utf8").trim();
		const newKey = "5a".repeat(32);
		node = await startNode({ CRONJOB_DATA_DIR: dataDir, CRONJOB_SECRET_KEY: newKey, CRONJOB_SECRET_KEY_PREVIOUS: oldKey });
		const rotated = await node.broker.call<{ jobs: number; values: number }, Record<string, never>>("jobs.rotateSecrets", {});
		expect(rotated).toMatchObject({ jobs: 1, values: 2 });
		expect(await node.broker.call("jobs.rotateSecrets", {})).toMatchObject({ jobs: 0, values: 0 });
		await node.stop();
		node = await startNode({ CRONJOB_DATA_DIR: dataDir, CRONJOB_SECRET_KEY: newKey });
		await waitFor(async () => (await node.request("GET", `/jobs/${id}`)).body?.worker !== null, 10_000, "the job assigned");
		expect(await runOnce(id)).toBe("SECRET-OK\n");
		expect(logged.join("\n")).not.toContain(MARKER);
	});
});
