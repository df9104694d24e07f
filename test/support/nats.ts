/**
 * A private NATS server for fault tests: Debian's `nats-server` on its own free port on 127.0.0.1,
 * with its pid file and log in a temp folder of its own, started and stopped by the test (never the
 * shared one). stop() is an outage (SIGKILL by default: the clients see their connection drop, no
 * goodbye), start() brings it back on the same port. NATS keeps no state of ours (subscriptions
 * live in the clients, which re-subscribe when they reconnect), so "the same data" is just the port.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { binary, freePort } from "./proc";
import { waitFor } from "./wait";

export interface PrivateNats {
	port: number;
	dir: string;
	/** nats://127.0.0.1:<port>, for TRANSPORTER. */
	url: string;
	pid(): number | null;
	/** Start (again) on the same port. Resolves when it accepts connections and greets with INFO. */
	start(): Promise<void>;
	/** Stop it (SIGKILL unless told otherwise) and wait until the process is gone. */
	stop(signal?: NodeJS.Signals): Promise<void>;
	/** Stop for good and delete its folder. */
	destroy(): Promise<void>;
}

/** Whether a NATS server answers on the port: a client connection is greeted with `INFO {...}`. */
function greets(port: number): Promise<boolean> {
	return new Promise((resolve) => {
		const sock = net.connect(port, "127.0.0.1");
		let answer = "";
		sock.setTimeout(1000, () => sock.destroy());
		sock.on("data", (d) => {
			answer += d.toString();
			if (answer.startsWith("INFO ")) sock.destroy();
		});
		sock.on("close", () => resolve(answer.startsWith("INFO ")));
		sock.on("error", () => resolve(false));
	});
}

export async function startPrivateNats(): Promise<PrivateNats> {
	const bin = binary("nats-server", "apt-get install nats-server; scripts/services.sh start does it as root");
	const port = await freePort();
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cronjob-nats-"));
	const pidFile = path.join(dir, "nats-server.pid");
	const logFile = path.join(dir, "nats-server.log");
	let child: ChildProcess | null = null;
	let exited: Promise<void> = Promise.resolve();

	const alive = (c: ChildProcess | null): c is ChildProcess => !!c && c.exitCode === null && c.signalCode === null;

	const nats: PrivateNats = {
		port,
		dir,
		url: `nats://127.0.0.1:${port}`,
		pid: () => (alive(child) ? (child.pid ?? null) : null),
		async start() {
			if (alive(child)) return;
			const proc = spawn(bin, ["-a", "127.0.0.1", "-p", String(port), "-P", pidFile, "-l", logFile], { stdio: "ignore" });
			child = proc;
			exited = new Promise((resolve) => proc.once("exit", () => resolve()));
			await waitFor(
				async () => {
					if (!alive(proc)) throw new Error(`nats-server exited: ${fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8").slice(-2000) : "(no log)"}`);
					return greets(port);
				},
				20_000,
				`private NATS on port ${port}`,
				25,
			).catch((err) => {
				proc.kill("SIGKILL");
				throw err;
			});
		},
		async stop(signal: NodeJS.Signals = "SIGKILL") {
			const proc = child;
			if (!alive(proc)) return;
			proc.kill(signal);
			await exited;
		},
		async destroy() {
			await nats.stop("SIGKILL");
			fs.rmSync(dir, { recursive: true, force: true });
		},
	};
	await nats.start();
	return nats;
}
