/**
 * The job assignment on ZooKeeper: a persistent child per job, `<root>/assignments/<worker>/<job>`,
 * written in transaction() batches (a move = delete + create in the same transaction, so it is
 * atomic) with several batches pipelined. Workers watch their own folder (watches.ts).
 */
import * as zookeeper from "node-zookeeper-client";
import type { AssignmentMove } from "../../core/coordination";
import { decodeId } from "../../core/zkpaths";
import { fail, isCode } from "./requests";
import type { ZkSession } from "./session";
import { readAssignments } from "./watches";

const { CreateMode, Exception } = zookeeper;

export class Assignments {
	/** Worker folders known to exist in the session of generation `knownGen`. */
	private readonly knownParents = new Set<string>();
	private knownGen = -1;

	constructor(
		private readonly session: ZkSession,
		/** Operations per transaction. */
		private readonly batchSize: number,
		/** Transactions in flight at once. */
		private readonly pipeline: number,
	) {}

	async get(workerId: string): Promise<string[]> {
		const client = this.session.live();
		try {
			return (await readAssignments(this.session, client, workerId)) ?? [];
		} catch (err) {
			fail(err);
		}
	}

	async all(): Promise<Map<string, string[]>> {
		const client = this.session.live();
		try {
			const names = (await this.session.zk.getChildren(client, this.session.paths.assignments)).sort();
			const out = new Map<string, string[]>();
			const lists = await Promise.all(
				names.map(async (n) => {
					const workerId = decodeId(n);
					return workerId === null ? null : ([workerId, (await readAssignments(this.session, client, workerId)) ?? []] as const);
				}),
			);
			for (const entry of lists) if (entry && entry[1].length > 0) out.set(entry[0], entry[1]);
			return out;
		} catch (err) {
			fail(err);
		}
	}

	/**
	 * Apply moves in transactions of `batchSize` operations (a move's delete and create stay in one
	 * transaction), `pipeline` transactions in flight. Lenient like the in-memory hub: deleting a
	 * missing assignment or creating an existing one is not an error (such a batch is redone op by op).
	 */
	async applyMoves(moves: AssignmentMove[]): Promise<void> {
		const { zk, paths } = this.session;
		const client = this.session.live();
		if (moves.length === 0) return;
		const gen = this.session.generation;
		if (this.knownGen !== gen) {
			// A new session: nothing is known about its folders yet.
			this.knownParents.clear();
			this.knownGen = gen;
		}
		try {
			// Worker folders first (idempotent; several managers may race).
			const parents = new Set<string>();
			for (const m of moves) if (m.to !== null) parents.add(paths.assignmentWorker(m.to));
			await Promise.all(
				[...parents]
					.filter((p) => !this.knownParents.has(p))
					.map(async (p) => {
						await zk.mkdirp(client, p);
						if (this.knownGen === gen) this.knownParents.add(p);
					}),
			);
			type Op = { kind: "remove" | "create"; path: string };
			const batches: Op[][] = [];
			let batch: Op[] = [];
			for (const m of moves) {
				const ops: Op[] = [];
				if (m.from !== null) ops.push({ kind: "remove", path: paths.assignment(m.from, m.jobId) });
				if (m.to !== null) ops.push({ kind: "create", path: paths.assignment(m.to, m.jobId) });
				if (batch.length + ops.length > this.batchSize) {
					batches.push(batch);
					batch = [];
				}
				batch.push(...ops);
			}
			if (batch.length > 0) batches.push(batch);

			const empty = Buffer.alloc(0);
			const commit = (ops: Op[]) =>
				zk.call<unknown>(client, "transaction", (cb) => {
					const tx = client.transaction();
					for (const op of ops) {
						if (op.kind === "remove") tx.remove(op.path, -1);
						else tx.create(op.path, empty, CreateMode.PERSISTENT);
					}
					tx.commit(cb);
				});
			const failed: Op[][] = [];
			let next = 0;
			const worker = async () => {
				while (next < batches.length) {
					const ops = batches[next++];
					try {
						await commit(ops);
					} catch (err) {
						if (isCode(err, Exception.NO_NODE) || isCode(err, Exception.NODE_EXISTS)) failed.push(ops);
						else throw err;
					}
				}
			};
			await Promise.all(Array.from({ length: Math.min(this.pipeline, batches.length) }, worker));
			for (const ops of failed) {
				for (const op of ops) {
					if (op.kind === "remove") await zk.remove(client, op.path);
					else {
						try {
							await zk.call<string>(client, `create ${op.path}`, (cb) => client.create(op.path, empty, CreateMode.PERSISTENT, cb));
						} catch (err) {
							if (isCode(err, Exception.NO_NODE)) {
								const parent = op.path.slice(0, op.path.lastIndexOf("/"));
								await zk.mkdirp(client, parent);
								await zk.call<string>(client, `create ${op.path}`, (cb) => client.create(op.path, empty, CreateMode.PERSISTENT, cb));
							} else if (!isCode(err, Exception.NODE_EXISTS)) throw err;
						}
					}
				}
			}
		} catch (err) {
			fail(err);
		}
	}
}
