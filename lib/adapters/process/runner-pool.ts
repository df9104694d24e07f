/**
 * Runs job processes from a few small helper processes ("runners", bin/runner.ts) instead of the
 * worker itself. fork() costs time in proportion to the parent's memory, and the worker is a large
 * process: spawning from small runners, one per core, takes that cost off the worker's event loop
 * and spreads a burst of fires over the cores. Each runner calls runProcess (executor.ts).
 *
 * Times: the pool takes and answers times on its injected clock; the runners, separate processes,
 * live on the system clock, so a release instant and a result's times are shifted between the two.
 */
import { fork, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Clock } from "../../core/clock";
import { failedBeforeStart } from "../../engine/worker/ports";
import { systemClock } from "../system/clock";
import type { ExecResult, ExecSpec } from "./executor";

export type RunnerSpec = Omit<ExecSpec, "signal">;

export type RunnerRequest = { type: "run"; id: number; spec: RunnerSpec } | { type: "abort"; id: number; reason: string };
export type RunnerReply = { type: "result"; id: number; result: ExecResult };

interface Pending {
	resolve(r: ExecResult): void;
	runner: Runner;
	startedAt: number;
}

interface Runner {
	child: ChildProcess;
	inflight: number;
	alive: boolean;
}

/** The runner script: dist/bin/runner.js (from ts sources under jest, the built copy). */
export function runnerScript(): string {
	// This file is lib/adapters/process/ under the repository (ts-jest) or under dist/.
	const here = path.resolve(__dirname, "../../../bin/runner.js");
	if (fs.existsSync(here)) return here;
	return path.resolve(__dirname, "../../../dist/bin/runner.js");
}

export class RunnerPool {
	private runners: Runner[] = [];
	private pending = new Map<number, Pending>();
	private seq = 0;
	private closed = false;

	constructor(
		private readonly size: number,
		private readonly script = runnerScript(),
		private readonly log: (msg: string) => void = () => undefined,
		private readonly clock: Clock = systemClock(),
	) {
		for (let i = 0; i < size; i++) this.runners.push(this.start());
	}

	private start(): Runner {
		const child = fork(this.script, [], {
			stdio: ["ignore", "inherit", "inherit", "ipc"],
			serialization: "advanced",
			// A small young generation: libuv forks, and a fork costs in proportion to the memory the
			// parent has touched (its page tables, then a copy-on-write fault per page it writes
			// after). The default semi-space (16 MiB) kept a runner at 70-90 MiB; at 1 MiB it stays
			// near 60 MiB and spends a sixth less per spawn. None of the worker's flags are wanted here.
			execArgv: ["--max-semi-space-size=1"],
			env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
		});
		const runner: Runner = { child, inflight: 0, alive: true };
		child.on("message", (msg: RunnerReply) => {
			if (msg?.type !== "result") return;
			const p = this.pending.get(msg.id);
			if (!p) return;
			this.pending.delete(msg.id);
			runner.inflight--;
			const shift = this.shift();
			const { readyAt } = msg.result;
			p.resolve({
				...msg.result,
				startedAt: msg.result.startedAt - shift,
				finishedAt: msg.result.finishedAt - shift,
				...(readyAt !== undefined ? { readyAt: readyAt - shift } : {}),
			});
		});
		child.on("exit", (code, signal) => {
			runner.alive = false;
			// Runs it was supervising are lost to us (their processes run on, detached): fail them.
			for (const [id, p] of this.pending) {
				if (p.runner !== runner) continue;
				this.pending.delete(id);
				p.resolve({ ...failedBeforeStart(p.startedAt, `the runner process exited (${signal ?? code}) during the run`), finishedAt: this.clock.now() });
			}
			if (!this.closed) {
				this.log(`runner ${child.pid} exited (${signal ?? code}); starting another`);
				const i = this.runners.indexOf(runner);
				if (i >= 0) this.runners[i] = this.start();
			}
		});
		return runner;
	}

	/** Run one process on the least busy runner. Never rejects. */
	run(spec: ExecSpec): Promise<ExecResult> {
		const { signal, ...rest } = spec;
		// The runner holds a prefired process until releaseAt on the system clock.
		const plain = rest.releaseAt == null ? rest : { ...rest, releaseAt: rest.releaseAt + this.shift() };
		const live = this.runners.filter((r) => r.alive && r.child.connected);
		const now = this.clock.now();
		if (this.closed || live.length === 0) return Promise.resolve(failedBeforeStart(now, "no runner process is available"));
		const runner = live.reduce((a, b) => (b.inflight < a.inflight ? b : a));
		const id = ++this.seq;
		return new Promise<ExecResult>((resolve) => {
			this.pending.set(id, { resolve, runner, startedAt: now });
			runner.inflight++;
			runner.child.send({ type: "run", id, spec: plain } satisfies RunnerRequest);
			if (signal) {
				const onAbort = () => {
					if (this.pending.has(id) && runner.child.connected)
						runner.child.send({ type: "abort", id, reason: String(signal.reason ?? "cancelled") } satisfies RunnerRequest);
				};
				if (signal.aborted) onAbort();
				else signal.addEventListener("abort", onAbort, { once: true });
			}
		});
	}

	/** The system clock minus ours, ms (0 with the system clock). */
	private shift(): number {
		return Date.now() - this.clock.now();
	}

	/** Stop the runners (after the worker's runs have finished). */
	async close(): Promise<void> {
		this.closed = true;
		await Promise.all(
			this.runners.map(
				(r) =>
					new Promise<void>((resolve) => {
						if (!r.alive) return resolve();
						r.child.once("exit", () => resolve());
						r.child.kill("SIGTERM");
					}),
			),
		);
	}
}
