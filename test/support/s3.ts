/**
 * A real S3 server for tests: s3rver in-process (temp folder, free port, bucket "cronjob", silent),
 * or the external server named by S3_ENDPOINT (then nothing is started and stop() does nothing).
 */
import { freePort } from "./proc";
import * as fs from "node:fs";
import type * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

interface S3rverInstance {
	run(): Promise<net.AddressInfo>;
	close(): Promise<void>;
}
type S3rverCtor = new (options: Record<string, unknown>) => S3rverInstance;
// s3rver ships no type declarations.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require("s3rver") as S3rverCtor;

export interface TestS3 {
	endpoint: string;
	bucket: string;
	region: string;
	accessKeyId: string;
	secretAccessKey: string;
	/** True when this is an in-process s3rver (which can be stopped and restarted). */
	local: boolean;
	/** The s3rver data folder (local only). */
	directory: string | null;
	/** Stop the server for good and delete its data folder. */
	stop(): Promise<void>;
	/** Simulate an outage: stop listening, keep the data (local only; no-op for an external server). */
	down(): Promise<void>;
	/** End the outage: listen again on the same port with the same data (local only). */
	up(): Promise<void>;
}

export const TEST_BUCKET = "cronjob";

export async function startS3(): Promise<TestS3> {
	const external = process.env.S3_ENDPOINT?.trim();
	if (external) {
		const noop = async () => undefined;
		return {
			endpoint: external,
			bucket: process.env.S3_BUCKET || TEST_BUCKET,
			region: process.env.AWS_REGION || "us-east-1",
			accessKeyId: process.env.AWS_ACCESS_KEY_ID || "S3RVER",
			secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY || "S3RVER",
			local: false,
			directory: null,
			stop: noop,
			down: noop,
			up: noop,
		};
	}

	const directory = fs.mkdtempSync(path.join(os.tmpdir(), "s3rver-"));
	const port = await freePort();
	let server: S3rverInstance | null = null;
	const start = async () => {
		const s = new S3rver({
			address: "127.0.0.1",
			port,
			directory,
			silent: true,
			configureBuckets: [{ name: TEST_BUCKET }],
		});
		await s.run();
		server = s;
	};
	const halt = async () => {
		const s = server;
		server = null;
		if (s) await s.close();
	};
	await start();
	return {
		endpoint: `http://127.0.0.1:${port}`,
		bucket: TEST_BUCKET,
		region: "us-east-1",
		accessKeyId: "S3RVER",
		secretAccessKey: "S3RVER",
		local: true,
		directory,
		down: halt,
		up: async () => {
			if (!server) await start();
		},
		stop: async () => {
			await halt();
			fs.rmSync(directory, { recursive: true, force: true });
		},
	};
}

export { freePort };
