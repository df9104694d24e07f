/**
 * A runner: a small helper process of the worker that spawns and supervises job processes
 * (lib/adapters/process/runner-pool.ts). It takes requests over the IPC channel and answers each with the result.
 */
import { runProcess } from "../lib/adapters/process/executor";
import type { RunnerReply, RunnerRequest } from "../lib/adapters/process/runner-pool";

const controllers = new Map<number, AbortController>();

process.on("message", (msg: RunnerRequest) => {
	if (msg.type === "abort") {
		controllers.get(msg.id)?.abort(msg.reason);
		return;
	}
	if (msg.type !== "run") return;
	const controller = new AbortController();
	controllers.set(msg.id, controller);
	void runProcess({ ...msg.spec, signal: controller.signal }).then((result) => {
		controllers.delete(msg.id);
		if (process.connected) process.send?.({ type: "result", id: msg.id, result } satisfies RunnerReply);
	});
});

// The worker went away: nothing more to answer to.
process.on("disconnect", () => process.exit(0));
