/**
 * Start a real node (broker + services, real HTTP) on a temporary data folder, as `npm start` does,
 * and talk to it over HTTP.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { AddressInfo } from "node:net";
import type { ServiceBroker } from "moleculer";
import { loadConfig, type Config } from "../../lib/config";
import { createNode, type NodeDeps } from "../../app/node";
import { waitFor } from "./wait";

export const ADMIN_TOKEN = "test-admin-token-0123456789";

export interface TestNode {
	broker: ServiceBroker;
	config: Config;
	url: string;
	dataDir: string;
	request(
		method: string,
		path: string,
		opts?: { body?: unknown; token?: string | null; raw?: string; headers?: Record<string, string> },
	): Promise<{ status: number; body: any; headers: Headers }>;
	stop(): Promise<void>;
}

export function tempDir(prefix = "cronjob-test-"): string {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
	fs.chmodSync(dir, 0o755);
	return dir;
}

export async function startNode(env: Record<string, string> = {}, deps: NodeDeps = {}): Promise<TestNode> {
	const dataDir = env.CRONJOB_DATA_DIR ?? tempDir();
	const config = loadConfig({
		CRONJOB_ADMIN_TOKEN: ADMIN_TOKEN,
		PORT: "0",
		LOG_LEVEL: "warn",
		NODE_ID: `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
		// Tests send bursts from one address with a few tokens: no request limits unless a test sets them.
		CRONJOB_RATE_LIMIT: "0",
		CRONJOB_RATE_LIMIT_ADDRESS: "0",
		CRONJOB_AUTH_FAIL_LIMIT: "0",
		...env,
		CRONJOB_DATA_DIR: dataDir,
	});
	const broker = createNode(config, deps);
	await broker.start();
	let url = "";
	if (config.services.includes("api")) {
		const api = broker.getLocalService("api") as unknown as { server: { address(): AddressInfo } };
		url = `http://127.0.0.1:${api.server.address().port}`;
	}
	const request: TestNode["request"] = async (method, p, opts = {}) => {
		const headers: Record<string, string> = { ...(opts.headers ?? {}) };
		const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
		if (token) headers.authorization = `Bearer ${token}`;
		let body: string | undefined;
		if (opts.raw !== undefined) body = opts.raw;
		else if (opts.body !== undefined) body = JSON.stringify(opts.body);
		if (body !== undefined && !headers["content-type"]) headers["content-type"] = "application/json";
		const res = await fetch(url + p, { method, headers, body });
		const text = await res.text();
		let parsed: unknown = text;
		try {
			parsed = text ? JSON.parse(text) : null;
		} catch {
			/* not JSON */
		}
		return { status: res.status, body: parsed, headers: res.headers };
	};
	const node: TestNode = { broker, config, url, dataDir, request, stop: () => broker.stop() };
	// moleculer-web builds its routes shortly after start.
	if (url) await waitFor(async () => (await request("GET", "/jobs")).status !== 404, 10_000, "API routes");
	return node;
}
