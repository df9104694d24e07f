/**
 * Coordination on ZooKeeper (node-zookeeper-client), following Apache Curator's recipes.
 *
 * Connection states (Curator's ConnectionStateManager):
 * - "connected": the session is usable;
 * - "suspended": the connection dropped; the session may still live. Leadership is revoked at once
 *   (a leader must not act while it cannot know whether it still leads). If the connection comes back
 *   within the session timeout, the same session continues ("connected", newSession: false) and the
 *   candidate leads again if its node is still the lowest;
 * - "expired": the server expired the session, or the connection stayed down for the whole session
 *   timeout (Curator's LOST). Leadership is revoked, claims are dropped, then a NEW client/session is
 *   created, the worker registrations re-created, the election re-entered, and
 *   {state: "connected", newSession: true} is emitted so services reconcile;
 * - "closed": close() was called (or connect() was never called).
 *
 * Recipes (znode layout in lib/zkpaths.ts):
 * - workers: ephemeral `<root>/workers/<id>`, data = JSON WorkerRegistration;
 * - election (LeaderLatch): ephemeral sequential `<root>/election/n_<guid>_<seq>`; the lowest leads and
 *   every other candidate watches only its predecessor (no herd effect);
 * - claims (lock without waiting): ephemeral sequential `<root>/claims/<job>/<scheduledAt>/lock-<guid>-<seq>`;
 *   the lowest holds; a claimer that is not lowest deletes its node and gets null;
 * - assignments: a persistent child per job, `<root>/assignments/<worker>/<job>`, written in
 *   transaction() batches (a move = delete + create in the same transaction, so it is atomic) with
 *   several batches pipelined; a worker watches the children of its own folder.
 * Sequential nodes carry a guid (Curator's "protected" mode) so a create whose answer was lost with the
 * connection can be found and cleaned up.
 */
import { randomBytes } from "node:crypto";
import * as zookeeper from "node-zookeeper-client";
import type { Client, Stat } from "node-zookeeper-client";
import type { Service } from "moleculer";
import { unavailable } from "../../core/errors";
import type {
	AssignmentMove,
	Candidacy,
	Claim,
	ConnectionState,
	Coordination,
	LeadershipHandlers,
	StateChange,
	WorkerRegistration,
} from "../../core/coordination";
import { bySequence, decodeId, parseClaimName, parseElectionName, ZkPaths } from "../../core/zkpaths";

const { CreateMode, Exception, State, Event } = zookeeper;

export interface CoordinationLogger {
	debug(...args: unknown[]): void;
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
	error(...args: unknown[]): void;
}

export interface ZookeeperCoordinationOptions {
	/** host:port[,host:port][/chroot] */
	connectionString: string;
	/** Root of every znode (default /cronjob). */
	root?: string;
	/** Requested session timeout (default 2000 ms; the server bounds it by its min/max). */
	sessionTimeoutMs?: number;
	/** How long connect() waits for the first session (default 30 s). */
	connectTimeoutMs?: number;
	/** Deadline of one ZooKeeper request (default max(2 x session timeout, 5 s)). */
	operationTimeoutMs?: number;
	/** Operations per transaction in applyMoves (default 250). */
	batchSize?: number;
	/** Transactions in flight at once in applyMoves (default 16). */
	pipeline?: number;
	logger?: CoordinationLogger;
}

const silentLogger: CoordinationLogger = { debug() {}, info() {}, warn() {}, error() {} };

type ZkError = Error & { getCode?: () => number; code?: number };

function zkCode(err: unknown): number | null {
	const e = err as ZkError | null;
	if (e && typeof e.getCode === "function") return e.getCode();
	return null;
}

function isCode(err: unknown, code: number): boolean {
	return zkCode(err) === code;
}

function guid(): string {
	return randomBytes(8).toString("hex");
}

function basename(path: string): string {
	return path.slice(path.lastIndexOf("/") + 1);
}

function delay(ms: number): Promise<void> {
	return new Promise((resolve) => setTimeout(resolve, ms));
}

class CoordinationUnavailable extends Error {}

export class ZookeeperCoordination implements Coordination {
	readonly kind = "zookeeper" as const;
	readonly paths: ZkPaths;
	private readonly log: CoordinationLogger;
	private readonly sessionTimeoutMs: number;
	private readonly connectTimeoutMs: number;
	private readonly opTimeoutMs: number;
	private readonly batchSize: number;
	private readonly pipeline: number;

	private client: Client | null = null;
	/** Incremented for every new client; events of older clients are ignored. */
	private generation = 0;
	/** The generation whose session is fully set up (registrations, election), or -1. */
	private readyGeneration = -1;
	private current: ConnectionState = "closed";
	private closing = false;
	private recovering: Promise<void> | null = null;
	private lostTimer: NodeJS.Timeout | null = null;

	private readonly stateListeners = new Set<(change: StateChange) => void>();
	private readonly registrations = new Map<string, WorkerRegistration>();
	private readonly candidacies = new Set<ZkCandidacy>();
	private readonly claims = new Set<ZkClaim>();
	private readonly workerWatch: WorkersWatch;
	private readonly assignmentWatches = new Map<string, AssignmentWatch>();
	private readonly knownAssignmentParents = new Set<string>();

	constructor(opts: ZookeeperCoordinationOptions) {
		if (!opts || typeof opts.connectionString !== "string" || opts.connectionString.length === 0) {
			throw new Error("ZookeeperCoordination needs a connectionString (host:port[,host:port][/chroot])");
		}
		this.opts = opts;
		this.paths = new ZkPaths(opts.root);
		this.log = opts.logger ?? silentLogger;
		this.sessionTimeoutMs = opts.sessionTimeoutMs ?? 2000;
		this.connectTimeoutMs = opts.connectTimeoutMs ?? 30_000;
		this.opTimeoutMs = opts.operationTimeoutMs ?? Math.max(2 * this.sessionTimeoutMs, 5000);
		this.batchSize = Math.max(2, opts.batchSize ?? 250);
		this.pipeline = Math.max(1, opts.pipeline ?? 16);
		this.workerWatch = new WorkersWatch(this);
	}

	private readonly opts: ZookeeperCoordinationOptions;

	// ------------------------------------------------------------------ connection

	state(): ConnectionState {
		return this.current;
	}

	/** The current session id (hex), or null. For diagnostics and tests. */
	sessionId(): string | null {
		return this.client && this.readyGeneration === this.generation ? this.client.getSessionId().toString("hex") : null;
	}

	/** The current session's id and password, e.g. to force an expiry in tests. */
	sessionCredentials(): { sessionId: Buffer; password: Buffer } | null {
		if (!this.client || this.readyGeneration !== this.generation) return null;
		return { sessionId: this.client.getSessionId(), password: this.client.getSessionPassword() };
	}

	async connect(): Promise<void> {
		if (this.current !== "closed") return;
		this.closing = false;
		try {
			await this.startSession(false, this.connectTimeoutMs);
		} catch (err) {
			this.dropClient();
			this.current = "closed";
			throw unavailable("coordination", err);
		}
	}

	async close(): Promise<void> {
		if (this.closing || (this.current === "closed" && !this.client)) return;
		this.closing = true;
		this.clearLostTimer();
		for (const c of this.candidacies) c.shutdown();
		this.candidacies.clear();
		for (const c of this.claims) c.dropped = true;
		this.claims.clear();
		this.registrations.clear();
		const client = this.client;
		this.client = null;
		this.generation++;
		this.readyGeneration = -1;
		if (client) await closeClient(client, 2000);
		this.workerWatch.reset();
		this.assignmentWatches.clear();
		this.setState("closed", false);
		if (this.recovering) await this.recovering.catch(() => undefined);
	}

	onStateChange(listener: (change: StateChange) => void): () => void {
		this.stateListeners.add(listener);
		return () => {
			this.stateListeners.delete(listener);
		};
	}

	/** Create a client, wait for its session, then (re-)create our ephemeral state. */
	private async startSession(newSession: boolean, timeoutMs: number): Promise<void> {
		const gen = ++this.generation;
		this.knownAssignmentParents.clear();
		const client = zookeeper.createClient(this.opts.connectionString, {
			sessionTimeout: this.sessionTimeoutMs,
			spinDelay: 200,
			retries: 0,
		});
		this.client = client;
		client.on("state", (s) => this.onClientState(gen, s));
		await new Promise<void>((resolve, reject) => {
			const timer = setTimeout(() => {
				client.removeListener("state", onState);
				reject(new Error(`no ZooKeeper session within ${timeoutMs} ms (${this.opts.connectionString})`));
			}, timeoutMs);
			const onState = (s: zookeeper.State) => {
				if (s === State.SYNC_CONNECTED) {
					clearTimeout(timer);
					client.removeListener("state", onState);
					resolve();
				}
			};
			client.on("state", onState);
			client.connect();
		});
		if (gen !== this.generation) throw new CoordinationUnavailable("superseded");
		for (const p of this.paths.basePaths()) await this.call<string>(client, `mkdirp ${p}`, (cb) => client.mkdirp(p, cb));
		for (const info of this.registrations.values()) await this.writeWorkerNode(client, info);
		for (const c of this.candidacies) await c.enter(client, gen);
		if (gen !== this.generation) throw new CoordinationUnavailable("superseded");
		this.readyGeneration = gen;
		this.log.info(
			`ZooKeeper session ${client.getSessionId().toString("hex")} ready (timeout ${client.getSessionTimeout()} ms${newSession ? ", new session after expiry" : ""})`,
		);
		this.setState("connected", newSession, true);
		for (const c of this.candidacies) c.schedule();
		this.rearmWatches();
	}

	private onClientState(gen: number, s: zookeeper.State): void {
		if (gen !== this.generation || this.closing) return;
		if (s === State.SYNC_CONNECTED || s === State.CONNECTED_READ_ONLY) {
			if (this.readyGeneration === gen && this.current === "suspended") {
				this.clearLostTimer();
				this.log.info("ZooKeeper connection restored (same session)");
				this.setState("connected", false);
				for (const c of this.candidacies) c.schedule();
				this.rearmWatches();
			}
		} else if (s === State.DISCONNECTED) {
			if (this.readyGeneration === gen && this.current === "connected") {
				this.log.warn("ZooKeeper connection lost: suspended");
				this.setState("suspended", false);
				for (const c of this.candidacies) c.suspend();
				this.clearLostTimer();
				const timeout = this.client?.getSessionTimeout() || this.sessionTimeoutMs;
				this.lostTimer = setTimeout(() => {
					this.lostTimer = null;
					if (gen === this.generation && this.current === "suspended") {
						this.log.warn(`ZooKeeper connection down for the whole session timeout (${timeout} ms): treating the session as lost`);
						this.expire();
					}
				}, timeout);
			}
		} else if (s === State.EXPIRED) {
			this.log.warn("ZooKeeper session expired");
			this.expire();
		} else if (s === State.AUTH_FAILED) {
			this.log.error("ZooKeeper authentication failed");
		}
	}

	/** Session expired (or lost): revoke, drop claims, then build a new session in the background. */
	private expire(): void {
		if (this.closing || this.current === "closed") return;
		this.clearLostTimer();
		this.readyGeneration = -1;
		this.generation++;
		this.dropClient();
		for (const c of this.candidacies) c.lost();
		for (const c of this.claims) c.dropped = true;
		this.claims.clear();
		this.setState("expired", false);
		if (!this.recovering) {
			this.recovering = this.recover().finally(() => {
				this.recovering = null;
			});
		}
	}

	private async recover(): Promise<void> {
		let backoff = 100;
		while (!this.closing) {
			try {
				await this.startSession(true, Math.max(this.sessionTimeoutMs * 2, 5000));
				return;
			} catch (err) {
				if (this.closing) return;
				this.log.warn(`ZooKeeper: new session failed (${err instanceof Error ? err.message : String(err)}); retrying in ${backoff} ms`);
				this.dropClient();
				await delay(backoff);
				backoff = Math.min(backoff * 2, 5000);
			}
		}
	}

	private dropClient(): void {
		const client = this.client;
		this.client = null;
		if (client) {
			client.removeAllListeners("state");
			try {
				client.close();
			} catch {
				/* already closed */
			}
		}
	}

	private clearLostTimer(): void {
		if (this.lostTimer) clearTimeout(this.lostTimer);
		this.lostTimer = null;
	}

	private setState(state: ConnectionState, newSession: boolean, force = false): void {
		if (this.current === state && !force) return;
		this.current = state;
		const change: StateChange = { state, newSession };
		const listeners = [...this.stateListeners];
		setImmediate(() => {
			for (const l of listeners) {
				try {
					l(change);
				} catch (err) {
					this.log.error("coordination state listener failed", err);
				}
			}
		});
	}

	private rearmWatches(): void {
		this.workerWatch.schedule();
		for (const w of this.assignmentWatches.values()) w.schedule();
	}

	// ------------------------------------------------------------------ request helpers

	/** @internal The client when the session is usable; throws 503 otherwise. */
	live(): Client {
		if (this.current !== "connected" || !this.client || this.readyGeneration !== this.generation) {
			throw unavailable("coordination", `ZooKeeper session is ${this.current}`);
		}
		return this.client;
	}

	/** @internal The client for internal work even while (re)establishing, or null. */
	currentClient(): { client: Client; gen: number } | null {
		return this.client ? { client: this.client, gen: this.generation } : null;
	}

	/** @internal */
	isReady(gen: number): boolean {
		return gen === this.generation && this.readyGeneration === gen && this.current === "connected";
	}

	/** @internal One request with a deadline. Rejects with the ZooKeeper exception (check codes with zkCode). */
	call<T>(client: Client, what: string, fn: (cb: (err: Error | zookeeper.Exception | null, res: T) => void) => void): Promise<T> {
		return new Promise<T>((resolve, reject) => {
			let done = false;
			const timer = setTimeout(() => {
				if (done) return;
				done = true;
				reject(unavailable("coordination", `${what}: no answer within ${this.opTimeoutMs} ms`));
			}, this.opTimeoutMs);
			try {
				fn((err, res) => {
					if (done) return;
					done = true;
					clearTimeout(timer);
					if (err) reject(err);
					else resolve(res);
				});
			} catch (err) {
				done = true;
				clearTimeout(timer);
				reject(err);
			}
		});
	}

	/** Map connection-level failures to 503 for callers. */
	private fail(err: unknown): never {
		const code = zkCode(err);
		if (code === Exception.CONNECTION_LOSS || code === Exception.SESSION_EXPIRED || code === Exception.OPERATION_TIMEOUT) {
			throw unavailable("coordination", err);
		}
		throw err;
	}

	private async getChildren(client: Client, path: string, watcher?: (e: zookeeper.Event) => void): Promise<string[]> {
		return this.call<string[]>(client, `getChildren ${path}`, (cb) => (watcher ? client.getChildren(path, watcher, cb) : client.getChildren(path, cb)));
	}

	private async getData(client: Client, path: string, watcher?: (e: zookeeper.Event) => void): Promise<{ data: Buffer | null; stat: Stat }> {
		return new Promise((resolve, reject) => {
			this.call<[Buffer | null, Stat]>(client, `getData ${path}`, (cb) => {
				const done = (err: Error | zookeeper.Exception | null, data: Buffer, stat: Stat) => cb(err, [data, stat]);
				if (watcher) client.getData(path, watcher, done);
				else client.getData(path, done);
			}).then(([data, stat]) => resolve({ data, stat }), reject);
		});
	}

	private async remove(client: Client, path: string): Promise<boolean> {
		try {
			await this.call<void>(client, `remove ${path}`, (cb) => client.remove(path, -1, (err) => cb(err, undefined)));
			return true;
		} catch (err) {
			if (isCode(err, Exception.NO_NODE)) return false;
			throw err;
		}
	}

	// ------------------------------------------------------------------ workers

	private async writeWorkerNode(client: Client, info: WorkerRegistration): Promise<void> {
		const path = this.paths.worker(info.id);
		const data = Buffer.from(JSON.stringify(info));
		for (let attempt = 0; attempt < 5; attempt++) {
			try {
				await this.call<string>(client, `create ${path}`, (cb) => client.create(path, data, CreateMode.EPHEMERAL, cb));
				return;
			} catch (err) {
				if (!isCode(err, Exception.NODE_EXISTS)) throw err;
			}
			// Exists: ours -> update; another session's (a previous incarnation of this worker) -> replace it.
			try {
				const { stat } = await this.getData(client, path);
				if (stat.ephemeralOwner.equals(client.getSessionId())) {
					await this.call<Stat>(client, `setData ${path}`, (cb) => client.setData(path, data, -1, cb));
					return;
				}
				this.log.warn(`worker ${info.id} was registered by another session: replacing it`);
				await this.remove(client, path);
			} catch (err) {
				if (!isCode(err, Exception.NO_NODE)) throw err;
			}
		}
		throw new Error(`could not register worker ${info.id}`);
	}

	async registerWorker(info: WorkerRegistration): Promise<void> {
		const client = this.live();
		this.registrations.set(info.id, { ...info });
		try {
			await this.writeWorkerNode(client, info);
		} catch (err) {
			this.fail(err);
		}
	}

	async updateWorker(info: WorkerRegistration): Promise<void> {
		const client = this.live();
		if (!this.registrations.has(info.id)) throw new Error(`worker ${info.id} is not registered by this session`);
		this.registrations.set(info.id, { ...info });
		const path = this.paths.worker(info.id);
		try {
			await this.call<Stat>(client, `setData ${path}`, (cb) => client.setData(path, Buffer.from(JSON.stringify(info)), -1, cb));
		} catch (err) {
			if (isCode(err, Exception.NO_NODE)) {
				try {
					await this.writeWorkerNode(client, info);
				} catch (e) {
					this.fail(e);
				}
				return;
			}
			this.fail(err);
		}
	}

	async unregisterWorker(id: string): Promise<void> {
		const client = this.live();
		this.registrations.delete(id);
		try {
			await this.remove(client, this.paths.worker(id));
		} catch (err) {
			this.fail(err);
		}
	}

	/** @internal Read every registration, optionally setting watchers on the folder and each node. */
	async readWorkers(client: Client, watcher?: (e: zookeeper.Event) => void): Promise<WorkerRegistration[]> {
		const names = await this.getChildren(client, this.paths.workers, watcher);
		const out: WorkerRegistration[] = [];
		await Promise.all(
			names.map(async (name) => {
				const id = decodeId(name);
				if (id === null) return;
				try {
					const { data } = await this.getData(client, `${this.paths.workers}/${name}`, watcher);
					if (!data) return;
					out.push(JSON.parse(data.toString("utf8")) as WorkerRegistration);
				} catch (err) {
					if (isCode(err, Exception.NO_NODE)) return;
					if (err instanceof SyntaxError) {
						this.log.warn(`worker node ${name} has invalid JSON`);
						return;
					}
					throw err;
				}
			}),
		);
		return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
	}

	async listWorkers(): Promise<WorkerRegistration[]> {
		const client = this.live();
		try {
			return await this.readWorkers(client);
		} catch (err) {
			this.fail(err);
		}
	}

	/** Also called once, soon after subscribing, with the current list. */
	watchWorkers(listener: (workers: WorkerRegistration[]) => void): () => void {
		return this.workerWatch.add(listener);
	}

	// ------------------------------------------------------------------ election

	async campaign(candidateId: string, handlers: LeadershipHandlers): Promise<Candidacy> {
		const client = this.live();
		const candidacy = new ZkCandidacy(this, candidateId, handlers, this.log);
		this.candidacies.add(candidacy);
		try {
			await candidacy.enter(client, this.generation);
		} catch (err) {
			this.candidacies.delete(candidacy);
			this.fail(err);
		}
		candidacy.schedule();
		return candidacy;
	}

	/** @internal */
	forgetCandidacy(c: ZkCandidacy): void {
		this.candidacies.delete(c);
	}

	/** @internal Sorted election node names. */
	async electionNodes(client: Client): Promise<string[]> {
		const names = await this.getChildren(client, this.paths.election);
		return names.filter((n) => parseElectionName(n) !== null).sort(bySequence);
	}

	/** @internal */
	createElectionNode(client: Client, g: string, candidateId: string): Promise<string> {
		const prefix = this.paths.electionPrefix(g);
		return this.call<string>(client, `create ${prefix}`, (cb) => client.create(prefix, Buffer.from(candidateId), CreateMode.EPHEMERAL_SEQUENTIAL, cb));
	}

	/** @internal */
	watchNode(client: Client, path: string, watcher: (e: zookeeper.Event) => void): Promise<boolean> {
		return this.call<Stat | null>(client, `exists ${path}`, (cb) => client.exists(path, watcher, cb)).then((stat) => !!stat);
	}

	/** @internal */
	removeNode(client: Client, path: string): Promise<boolean> {
		return this.remove(client, path);
	}

	async leader(): Promise<string | null> {
		const client = this.live();
		try {
			for (let attempt = 0; attempt < 5; attempt++) {
				const nodes = await this.electionNodes(client);
				if (nodes.length === 0) return null;
				try {
					const { data } = await this.getData(client, this.paths.electionNode(nodes[0]));
					return data ? data.toString("utf8") : null;
				} catch (err) {
					if (!isCode(err, Exception.NO_NODE)) throw err;
				}
			}
			return null;
		} catch (err) {
			this.fail(err);
		}
	}

	// ------------------------------------------------------------------ assignments

	/** @internal Job ids under a worker's folder (null when the folder does not exist). */
	async readAssignments(client: Client, workerId: string, watcher?: (e: zookeeper.Event) => void): Promise<string[] | null> {
		try {
			const names = await this.getChildren(client, this.paths.assignmentWorker(workerId), watcher);
			const jobs: string[] = [];
			for (const n of names) {
				const id = decodeId(n);
				if (id !== null) jobs.push(id);
			}
			return jobs.sort();
		} catch (err) {
			if (isCode(err, Exception.NO_NODE)) return null;
			throw err;
		}
	}

	async getAssignments(workerId: string): Promise<string[]> {
		const client = this.live();
		try {
			return (await this.readAssignments(client, workerId)) ?? [];
		} catch (err) {
			this.fail(err);
		}
	}

	async allAssignments(): Promise<Map<string, string[]>> {
		const client = this.live();
		try {
			const names = (await this.getChildren(client, this.paths.assignments)).sort();
			const out = new Map<string, string[]>();
			const lists = await Promise.all(
				names.map(async (n) => {
					const workerId = decodeId(n);
					return workerId === null ? null : ([workerId, (await this.readAssignments(client, workerId)) ?? []] as const);
				}),
			);
			for (const entry of lists) if (entry && entry[1].length > 0) out.set(entry[0], entry[1]);
			return out;
		} catch (err) {
			this.fail(err);
		}
	}

	/**
	 * Apply moves in transactions of `batchSize` operations (a move's delete and create stay in one
	 * transaction), `pipeline` transactions in flight. Lenient like the in-memory hub: deleting a
	 * missing assignment or creating an existing one is not an error (such a batch is redone op by op).
	 */
	async applyMoves(moves: AssignmentMove[]): Promise<void> {
		const client = this.live();
		if (moves.length === 0) return;
		try {
			// Worker folders first (idempotent; several managers may race).
			const parents = new Set<string>();
			for (const m of moves) if (m.to !== null) parents.add(this.paths.assignmentWorker(m.to));
			await Promise.all(
				[...parents]
					.filter((p) => !this.knownAssignmentParents.has(p))
					.map(async (p) => {
						await this.call<string>(client, `mkdirp ${p}`, (cb) => client.mkdirp(p, cb));
						this.knownAssignmentParents.add(p);
					}),
			);
			type Op = { kind: "remove" | "create"; path: string };
			const batches: Op[][] = [];
			let batch: Op[] = [];
			for (const m of moves) {
				const ops: Op[] = [];
				if (m.from !== null) ops.push({ kind: "remove", path: this.paths.assignment(m.from, m.jobId) });
				if (m.to !== null) ops.push({ kind: "create", path: this.paths.assignment(m.to, m.jobId) });
				if (batch.length + ops.length > this.batchSize) {
					batches.push(batch);
					batch = [];
				}
				batch.push(...ops);
			}
			if (batch.length > 0) batches.push(batch);

			const empty = Buffer.alloc(0);
			const commit = (ops: Op[]) =>
				this.call<unknown>(client, "transaction", (cb) => {
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
					if (op.kind === "remove") await this.remove(client, op.path);
					else {
						try {
							await this.call<string>(client, `create ${op.path}`, (cb) => client.create(op.path, empty, CreateMode.PERSISTENT, cb));
						} catch (err) {
							if (isCode(err, Exception.NO_NODE)) {
								const parent = op.path.slice(0, op.path.lastIndexOf("/"));
								await this.call<string>(client, `mkdirp ${parent}`, (cb) => client.mkdirp(parent, cb));
								await this.call<string>(client, `create ${op.path}`, (cb) => client.create(op.path, empty, CreateMode.PERSISTENT, cb));
							} else if (!isCode(err, Exception.NODE_EXISTS)) throw err;
						}
					}
				}
			}
		} catch (err) {
			this.fail(err);
		}
	}

	/** Also called once, soon after subscribing, with the current list. */
	watchAssignments(workerId: string, listener: (jobIds: string[]) => void): () => void {
		let w = this.assignmentWatches.get(workerId);
		if (!w) {
			w = new AssignmentWatch(this, workerId);
			this.assignmentWatches.set(workerId, w);
		}
		const watch = w;
		const off = watch.add(listener);
		return () => {
			off();
			if (watch.size() === 0 && this.assignmentWatches.get(workerId) === watch) {
				watch.stop();
				this.assignmentWatches.delete(workerId);
			}
		};
	}

	// ------------------------------------------------------------------ claims

	/**
	 * Not re-entrant: a second claim of the same fire (even by the same owner) returns null while the
	 * first is held.
	 */
	/**
	 * Two round trips in the usual case: one multi-op creates the fire's folder <job>/<at> and the
	 * ephemeral sequential lock node under it, then getChildren checks that ours is the lowest. The
	 * job's folder stays between fires (only <at> is tidied away on release).
	 */
	async claim(jobId: string, scheduledAt: number, owner: string): Promise<Claim | null> {
		const client = this.live();
		const gen = this.generation;
		const dir = this.paths.claim(jobId, scheduledAt);
		const data = Buffer.from(owner);
		try {
			const g = guid();
			const prefix = this.paths.claimPrefix(jobId, scheduledAt, g);
			let created: string | null = null;
			for (let attempt = 0; attempt < 5 && created === null; attempt++) {
				try {
					const results = await this.call<{ path?: string }[]>(client, `claim ${dir}`, (cb) =>
						client.transaction().create(dir, CreateMode.PERSISTENT).create(prefix, data, CreateMode.EPHEMERAL_SEQUENTIAL).commit(cb),
					);
					created = results[1]?.path ?? null;
					if (created === null) throw new Error(`the claim under ${dir} answered no path`);
				} catch (err) {
					if (isCode(err, Exception.NODE_EXISTS)) {
						// <at> exists: somebody else is claiming or holds this fire; queue behind them.
						try {
							created = await this.call<string>(client, `create ${prefix}`, (cb) => client.create(prefix, data, CreateMode.EPHEMERAL_SEQUENTIAL, cb));
						} catch (e) {
							if (!isCode(e, Exception.NO_NODE)) {
								if (isCode(e, Exception.CONNECTION_LOSS)) this.cleanupProtected(dir, g, gen);
								throw e;
							}
							// <at> was tidied away meanwhile: try the multi-op again.
						}
						continue;
					}
					if (isCode(err, Exception.NO_NODE)) {
						// The job's folder (or the base path) is missing: the first claim of this job.
						await this.call<string>(client, `mkdirp ${this.paths.claimJob(jobId)}`, (cb) => client.mkdirp(this.paths.claimJob(jobId), cb));
						continue;
					}
					if (isCode(err, Exception.CONNECTION_LOSS)) this.cleanupProtected(dir, g, gen);
					throw err;
				}
			}
			if (created === null) throw new Error(`could not create a claim node under ${dir}`);
			const name = basename(created);
			const nodes = (await this.getChildren(client, dir)).filter((n) => parseClaimName(n) !== null).sort(bySequence);
			if (nodes[0] !== name) {
				await this.remove(client, created);
				return null;
			}
			if (gen !== this.generation) return null;
			const claim = new ZkClaim(this, jobId, scheduledAt, owner, created, gen);
			this.claims.add(claim);
			return claim;
		} catch (err) {
			this.fail(err);
		}
	}

	/** Protected mode: a create whose answer was lost may have succeeded; find it by guid and delete it. */
	private cleanupProtected(dir: string, g: string, gen: number): void {
		const attempt = async () => {
			const cur = this.currentClient();
			if (!cur || cur.gen !== gen) return; // session gone: so is the node
			const names = await this.getChildren(cur.client, dir);
			for (const n of names) if (parseClaimName(n)?.guid === g) await this.remove(cur.client, `${dir}/${n}`);
		};
		attempt().catch((err) => this.log.debug(`claim cleanup under ${dir} failed`, err));
	}

	/** @internal */
	async releaseClaim(claim: ZkClaim): Promise<void> {
		this.claims.delete(claim);
		if (claim.gen !== this.generation || !this.client) return; // the session (and the node) is gone
		const client = this.client;
		const dir = this.paths.claim(claim.jobId, claim.scheduledAt);
		try {
			// One round trip: the lock node and, when nobody else queues there, the fire's folder.
			try {
				await this.call<unknown>(client, `release ${claim.path}`, (cb) => client.transaction().remove(claim.path, -1).remove(dir, -1).commit(cb));
			} catch (err) {
				if (!isCode(err, Exception.NOT_EMPTY) && !isCode(err, Exception.NO_NODE)) throw err;
				await this.remove(client, claim.path); // others queue under <at>: leave it to the last one
			}
		} catch (err) {
			if (claim.gen !== this.generation) return;
			this.fail(err);
		}
	}

	async claimOwner(jobId: string, scheduledAt: number): Promise<string | null> {
		const client = this.live();
		const dir = this.paths.claim(jobId, scheduledAt);
		try {
			for (let attempt = 0; attempt < 5; attempt++) {
				let nodes: string[];
				try {
					nodes = (await this.getChildren(client, dir)).filter((n) => parseClaimName(n) !== null).sort(bySequence);
				} catch (err) {
					if (isCode(err, Exception.NO_NODE)) return null;
					throw err;
				}
				if (nodes.length === 0) return null;
				try {
					const { data } = await this.getData(client, `${dir}/${nodes[0]}`);
					return data ? data.toString("utf8") : "";
				} catch (err) {
					if (!isCode(err, Exception.NO_NODE)) throw err;
				}
			}
			return null;
		} catch (err) {
			this.fail(err);
		}
	}
}

// ---------------------------------------------------------------------- election

class ZkCandidacy implements Candidacy {
	private readonly guid = guid();
	private nodePath: string | null = null;
	private gen = -1;
	private leader = false;
	private resigned = false;
	private checking = false;
	private again = false;
	private handlerChain: Promise<void> = Promise.resolve();
	/** Stable function so the client deduplicates the watch. */
	private readonly onPredecessor = () => this.schedule();

	constructor(
		private readonly coord: ZookeeperCoordination,
		readonly candidateId: string,
		private readonly handlers: LeadershipHandlers,
		private readonly log: CoordinationLogger,
	) {}

	isLeader(): boolean {
		return this.leader;
	}

	async resign(): Promise<void> {
		if (this.resigned) return;
		this.resigned = true;
		this.coord.forgetCandidacy(this);
		this.setLeader(false);
		const path = this.nodePath;
		this.nodePath = null;
		const cur = this.coord.currentClient();
		if (path && cur && cur.gen === this.gen) {
			try {
				await this.coord.removeNode(cur.client, path);
			} catch (err) {
				this.log.warn(`could not delete election node ${path} (it goes with the session)`, err);
			}
		}
		await this.handlerChain;
	}

	/** @internal Create our election node in the (new) session. */
	async enter(client: Client, gen: number): Promise<void> {
		if (this.resigned) return;
		if (this.nodePath && this.gen === gen) return;
		try {
			this.nodePath = await this.coord.createElectionNode(client, this.guid, this.candidateId);
		} catch (err) {
			if (zkCode(err) !== Exception.CONNECTION_LOSS) throw err;
			// Protected mode: the node may exist although the answer was lost.
			const nodes = await this.coord.electionNodes(client);
			const mine = nodes.find((n) => parseElectionName(n)?.guid === this.guid);
			if (!mine) throw err;
			this.nodePath = this.coord.paths.electionNode(mine);
		}
		this.gen = gen;
	}

	/** @internal Re-check our position (serialised; coalesces bursts). */
	schedule(): void {
		if (this.checking) {
			this.again = true;
			return;
		}
		this.checking = true;
		void (async () => {
			try {
				do {
					this.again = false;
					await this.check();
				} while (this.again);
			} catch (err) {
				this.log.warn("election check failed", err);
			} finally {
				this.checking = false;
			}
		})();
	}

	private async check(): Promise<void> {
		if (this.resigned) return;
		const cur = this.coord.currentClient();
		if (!cur || !this.coord.isReady(cur.gen)) return; // re-checked when the session is ready again
		const { client, gen } = cur;
		if (!this.nodePath || this.gen !== gen) {
			await this.enter(client, gen);
		}
		const nodes = await this.coord.electionNodes(client);
		if (!this.coord.isReady(gen) || this.resigned) return;
		const name = basename(this.nodePath!);
		const idx = nodes.indexOf(name);
		if (idx < 0) {
			// Our node vanished within a live session (deleted by someone): enter again.
			this.log.warn(`election node ${name} disappeared: re-entering`);
			this.nodePath = null;
			this.setLeader(false);
			this.again = true;
			return;
		}
		if (idx === 0) {
			this.setLeader(true);
			return;
		}
		this.setLeader(false);
		// Watch only the predecessor; when it goes, check again.
		const exists = await this.coord.watchNode(client, this.coord.paths.electionNode(nodes[idx - 1]), this.onPredecessor);
		if (!exists) this.again = true;
	}

	/** @internal Connection suspended: stop leading now, keep the node. */
	suspend(): void {
		this.setLeader(false);
	}

	/** @internal Session expired: the node is gone; re-entered by the new session. */
	lost(): void {
		this.nodePath = null;
		this.gen = -1;
		this.setLeader(false);
	}

	/** @internal Coordination closing. */
	shutdown(): void {
		this.resigned = true;
		this.nodePath = null;
		this.setLeader(false);
	}

	private setLeader(leader: boolean): void {
		if (this.leader === leader) return;
		this.leader = leader;
		const fn = leader ? this.handlers.elected : this.handlers.revoked;
		this.log.info(`${this.candidateId}: leadership ${leader ? "acquired" : "revoked"}`);
		this.handlerChain = this.handlerChain
			.then(() => new Promise<void>((resolve) => setImmediate(resolve)))
			.then(() => fn.call(this.handlers))
			.catch((err: unknown) => this.log.error(`leadership handler (${leader ? "elected" : "revoked"}) failed`, err));
	}
}

// ---------------------------------------------------------------------- claims

class ZkClaim implements Claim {
	dropped = false;
	private released: Promise<void> | null = null;

	constructor(
		private readonly coord: ZookeeperCoordination,
		readonly jobId: string,
		readonly scheduledAt: number,
		readonly owner: string,
		readonly path: string,
		readonly gen: number,
	) {}

	release(): Promise<void> {
		if (this.dropped) return Promise.resolve();
		if (!this.released) this.released = this.coord.releaseClaim(this);
		return this.released;
	}
}

// ---------------------------------------------------------------------- watches

/** Delay between a watch event and the re-read (changes are delivered well within a second). */
const EVENT_DEBOUNCE_MS = 100;

/** Re-reads on every event, delivers when the value changed; at most one read in flight. */
abstract class Watch<T> {
	protected readonly listeners = new Set<(value: T) => void>();
	private last: string | null = null;
	private running = false;
	private again = false;
	private stopped = false;
	private debounce: NodeJS.Timeout | null = null;
	/**
	 * Stable function so the client deduplicates the watch registrations. Events are coalesced for
	 * EVENT_DEBOUNCE_MS: a leader writing 100k assignments in hundreds of transactions would otherwise
	 * make every watcher re-read a large folder after each one.
	 */
	protected readonly onEvent = () => {
		if (this.debounce) return;
		this.debounce = setTimeout(() => {
			this.debounce = null;
			this.schedule();
		}, EVENT_DEBOUNCE_MS);
	};

	constructor(protected readonly coord: ZookeeperCoordination) {}

	protected abstract read(client: Client): Promise<T>;

	add(listener: (value: T) => void): () => void {
		this.listeners.add(listener);
		this.stopped = false;
		// The first delivery to a new listener: force it even when the value did not change.
		this.last = null;
		this.schedule();
		return () => {
			this.listeners.delete(listener);
		};
	}

	size(): number {
		return this.listeners.size;
	}

	stop(): void {
		this.stopped = true;
		if (this.debounce) clearTimeout(this.debounce);
		this.debounce = null;
	}

	reset(): void {
		if (this.debounce) clearTimeout(this.debounce);
		this.debounce = null;
		this.listeners.clear();
		this.last = null;
		this.stopped = true;
	}

	schedule(): void {
		if (this.stopped || this.listeners.size === 0) return;
		if (this.running) {
			this.again = true;
			return;
		}
		this.running = true;
		void this.loop();
	}

	private async loop(): Promise<void> {
		try {
			do {
				this.again = false;
				const cur = this.coord.currentClient();
				if (!cur || !this.coord.isReady(cur.gen) || this.stopped || this.listeners.size === 0) break;
				let value: T;
				try {
					value = await this.read(cur.client);
				} catch {
					// Connection trouble: the state machine re-arms every watch when the session is usable again.
					if (this.coord.isReady(cur.gen)) {
						await delay(200);
						this.again = true;
					}
					continue;
				}
				if (!this.coord.isReady(cur.gen) || this.stopped) break;
				const key = JSON.stringify(value);
				if (key === this.last) continue;
				this.last = key;
				for (const l of [...this.listeners]) {
					try {
						l(value);
					} catch {
						/* a listener's failure is its own */
					}
				}
			} while (this.again);
		} finally {
			this.running = false;
		}
	}
}

class WorkersWatch extends Watch<WorkerRegistration[]> {
	protected read(client: Client): Promise<WorkerRegistration[]> {
		return this.coord.readWorkers(client, this.onEvent);
	}
}

class AssignmentWatch extends Watch<string[]> {
	constructor(
		coord: ZookeeperCoordination,
		private readonly workerId: string,
	) {
		super(coord);
	}

	protected async read(client: Client): Promise<string[]> {
		for (;;) {
			const jobs = await this.coord.readAssignments(client, this.workerId, this.onEvent);
			if (jobs !== null) return jobs;
			// No folder yet: watch for its creation.
			const exists = await this.coord.watchNode(client, this.coord.paths.assignmentWorker(this.workerId), this.onEvent);
			if (!exists) return [];
		}
	}
}

function closeClient(client: Client, timeoutMs: number): Promise<void> {
	return new Promise((resolve) => {
		client.removeAllListeners("state");
		const state = client.getState();
		if (state !== State.SYNC_CONNECTED && state !== State.CONNECTED_READ_ONLY) {
			try {
				client.close();
			} catch {
				/* ignore */
			}
			resolve();
			return;
		}
		const timer = setTimeout(done, timeoutMs);
		function done() {
			clearTimeout(timer);
			client.removeListener("state", onState);
			resolve();
		}
		function onState(s: zookeeper.State) {
			if (s === State.DISCONNECTED || s === State.EXPIRED) done();
		}
		client.on("state", onState);
		client.close();
	});
}

export { Event as ZookeeperEvent };
