/** Run our node as a separate OS process (dist/bin/cronjob.js, built by `npm test`). */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { waitFor } from "./wait";

// The repository root, from the sources (jest) or from their compiled copy in dist/ (the benchmarks).
const UP = path.resolve(__dirname, "../..");
export const ROOT = path.basename(UP) === "dist" ? path.dirname(UP) : UP;
export const BIN = path.join(ROOT, "dist/bin/cronjob.js");

export async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const srv = net.createServer();
		srv.listen(0, "127.0.0.1", () => {
			const port = (srv.address() as net.AddressInfo).port;
			srv.close(() => resolve(port));
		});
		srv.on("error", reject);
	});
}

export interface NodeProcess {
	child: ChildProcess;
	env: Record<string, string>;
	log: () => string;
	exited: Promise<number | null>;
	kill(signal?: NodeJS.Signals): Promise<number | null>;
}

export function startProcess(env: Record<string, string>): NodeProcess {
	if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run \`npm run build\` (npm test does)`);
	let out = "";
	const child = spawn(process.execPath, [BIN], {
		env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LOG_LEVEL: "info", ...env },
		stdio: ["ignore", "pipe", "pipe"],
	});
	child.stdout?.on("data", (d) => (out += d.toString()));
	child.stderr?.on("data", (d) => (out += d.toString()));
	const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
	return {
		child,
		env,
		log: () => out,
		exited,
		async kill(signal: NodeJS.Signals = "SIGKILL") {
			if (child.exitCode === null && child.signalCode === null) child.kill(signal);
			return exited;
		},
	};
}

export async function httpJson(url: string, opts: { method?: string; token?: string; body?: unknown } = {}): Promise<{ status: number; body: any }> {
	const headers: Record<string, string> = {};
	if (opts.token) headers.authorization = `Bearer ${opts.token}`;
	if (opts.body !== undefined) headers["content-type"] = "application/json";
	const res = await fetch(url, { method: opts.method ?? "GET", headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
	const text = await res.text();
	let body: unknown = text;
	try {
		body = text ? JSON.parse(text) : null;
	} catch {
		/* keep text */
	}
	return { status: res.status, body };
}

export async function waitHealthy(baseUrl: string, timeoutMs = 30_000): Promise<void> {
	await waitFor(async () => (await httpJson(`${baseUrl}/health`).catch(() => ({ status: 0 }))).status === 200, timeoutMs, `${baseUrl}/health`);
}

/** An installed program's path (PATH, then the sbin and bin folders), or an error naming the package. */
export function binary(name: string, install: string): string {
	for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"])) {
		const p = path.join(dir, name);
		if (dir && fs.existsSync(p)) return p;
	}
	throw new Error(`${name} is not installed (${install})`);
}
