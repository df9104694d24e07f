/**
 * In-process Coordination with ZooKeeper's semantics, for the single-node default and for tests.
 *
 * `MemoryCoordinationHub` is the shared "server" (one per process); each service opens its own
 * session on it (`hub.session()` or `new MemoryCoordination(hub)`), exactly as each service holds
 * its own ZooKeeper session in a cluster:
 *
 * - a session's worker registrations, election node and claims are "ephemeral": they vanish when the
 *   session closes or expires (`hub.expire(session)` simulates an expiry);
 * - after an expiry the session behaves like ZookeeperCoordination: it revokes leadership, drops its
 *   claims, emits {state: "expired"}, then opens a "new session", re-creates its registrations,
 *   re-enters the election and emits {state: "connected", newSession: true};
 * - `hub.disconnect(session)` / `hub.reconnect(session)` simulate a connection loss that does not
 *   expire the session ("suspended": leadership is revoked, the ephemeral state stays, like Curator);
 * - watchers and leadership handlers fire asynchronously, never inside the mutating call; a failing one
 *   is reported through the session's logger (lib/adapters/coordination-support.ts), like ZooKeeper's.
 */
import { notFound, unavailable } from "../../core/errors";
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
import { CandidacyBase, ConnectionStates, deliver, silentLogger, type CoordinationLogger } from "../coordination-support";

interface WorkerNode {
	owner: MemoryCoordination;
	info: WorkerRegistration;
}

interface ElectionNode {
	seq: number;
	candidateId: string;
	owner: MemoryCoordination;
	candidacy: MemoryCandidacy;
}

interface ClaimNode {
	seq: number;
	owner: string;
	session: MemoryCoordination;
}

function claimKey(jobId: string, scheduledAt: number): string {
	return `${jobId}\u0000${scheduledAt}`;
}

function copyInfo(info: WorkerRegistration): WorkerRegistration {
	return { ...info };
}

/** The shared in-process "server" state. */
export class MemoryCoordinationHub {
	/** @internal */ readonly sessions = new Set<MemoryCoordination>();
	/** @internal */ readonly workers = new Map<string, WorkerNode>();
	/** @internal */ readonly election: ElectionNode[] = [];
	/** @internal */ readonly assignments = new Map<string, Set<string>>();
	/** @internal */ readonly claims = new Map<string, ClaimNode[]>();
	private seq = 0;
	private workersDirty = false;
	private readonly assignmentsDirty = new Set<string>();
	private flushScheduled = false;

	/**
	 * Open a new session (a Coordination for one service), reporting failing listeners and handlers
	 * through `logger`. Call connect() before use.
	 */
	session(logger?: CoordinationLogger): MemoryCoordination {
		return new MemoryCoordination(this, logger);
	}

	/**
	 * Simulate a session expiry (like the server expiring a ZooKeeper session): the session's
	 * ephemeral state vanishes, leadership is revoked, state goes "expired". Unless `reconnect` is
	 * false, the session then re-establishes itself on its own ("connected", newSession: true), re-creating
	 * its worker registrations and re-entering the election, asynchronously.
	 */
	expire(session: MemoryCoordination, opts: { reconnect?: boolean } = {}): void {
		session._expire(opts.reconnect !== false);
	}

	/** Simulate a connection loss without expiry: state "suspended", leadership revoked. */
	disconnect(session: MemoryCoordination): void {
		session._suspend();
	}

	/** End a simulated connection loss: state "connected" (newSession false), same ephemeral state. */
	reconnect(session: MemoryCoordination): void {
		session._resume();
	}

	/** @internal */
	nextSeq(): number {
		return ++this.seq;
	}

	/** @internal */
	markWorkersDirty(): void {
		this.workersDirty = true;
		this.scheduleFlush();
	}

	/** @internal */
	markAssignmentDirty(workerId: string): void {
		this.assignmentsDirty.add(workerId);
		this.scheduleFlush();
	}

	/** @internal Drop every ephemeral node of a session. */
	removeEphemerals(session: MemoryCoordination): void {
		let workersChanged = false;
		for (const [id, node] of this.workers) {
			if (node.owner === session) {
				this.workers.delete(id);
				workersChanged = true;
			}
		}
		if (workersChanged) this.markWorkersDirty();
		for (const [key, nodes] of this.claims) {
			const kept = nodes.filter((n) => n.session !== session);
			if (kept.length === 0) this.claims.delete(key);
			else if (kept.length !== nodes.length) this.claims.set(key, kept);
		}
		let electionChanged = false;
		for (let i = this.election.length - 1; i >= 0; i--) {
			if (this.election[i].owner === session) {
				const node = this.election[i];
				this.election.splice(i, 1);
				node.candidacy._lostNode(node);
				electionChanged = true;
			}
		}
		if (electionChanged) this.reconcileElection();
	}

	/** @internal The lowest election node leads, when its session is connected. */
	reconcileElection(): void {
		const first = this.election[0];
		if (first && first.owner.state() === "connected") first.candidacy._setLeader(true);
	}

	private scheduleFlush(): void {
		if (this.flushScheduled) return;
		this.flushScheduled = true;
		setImmediate(() => this.flush());
	}

	private flush(): void {
		this.flushScheduled = false;
		const workers = this.workersDirty;
		this.workersDirty = false;
		const dirty = [...this.assignmentsDirty];
		this.assignmentsDirty.clear();
		for (const session of this.sessions) {
			if (session.state() !== "connected") continue;
			if (workers) session._deliverWorkers();
			for (const workerId of dirty) session._deliverAssignments(workerId);
		}
	}

	/** @internal */
	listWorkers(): WorkerRegistration[] {
		return [...this.workers.values()].map((n) => copyInfo(n.info)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
	}

	/** @internal */
	assignmentsOf(workerId: string): string[] {
		const set = this.assignments.get(workerId);
		return set ? [...set].sort() : [];
	}
}

class MemoryCandidacy extends CandidacyBase {
	node: ElectionNode | null = null;

	constructor(
		private readonly session: MemoryCoordination,
		candidateId: string,
		handlers: LeadershipHandlers,
	) {
		super(candidateId, handlers, session.log);
	}

	protected async leave(): Promise<void> {
		this.session._forgetCandidacy(this);
		const node = this.node;
		this.node = null;
		this._setLeader(false);
		if (node) {
			const hub = this.session.hub;
			const i = hub.election.indexOf(node);
			if (i >= 0) hub.election.splice(i, 1);
			hub.reconcileElection();
		}
	}

	/** @internal Enter (or re-enter) the election with a new sequential node. */
	_enter(): void {
		if (this.resigned || this.node) return;
		const hub = this.session.hub;
		this.node = { seq: hub.nextSeq(), candidateId: this.candidateId, owner: this.session, candidacy: this };
		hub.election.push(this.node);
		hub.reconcileElection();
	}

	/** @internal The node was removed by the "server" (session closed or expired). */
	_lostNode(node: ElectionNode): void {
		if (this.node === node) this.node = null;
		this._setLeader(false);
	}

	/** @internal Asynchronous and in order: elected/revoked never overlap for one candidacy. */
	_setLeader(leader: boolean): void {
		this.leadership.set(leader);
	}
}

/** One session on a MemoryCoordinationHub. */
export class MemoryCoordination implements Coordination {
	readonly kind = "memory" as const;
	/** @internal Where failing listeners and leadership handlers are reported. */
	readonly log: CoordinationLogger;
	private readonly states: ConnectionStates;
	private readonly workerListeners = new Set<(workers: WorkerRegistration[]) => void>();
	private readonly assignmentListeners = new Map<string, Set<(jobIds: string[]) => void>>();
	/** Registrations made through this session, re-created after an expiry. */
	private readonly registrations = new Map<string, WorkerRegistration>();
	private readonly candidacies = new Set<MemoryCandidacy>();
	private reconnectPending = false;

	constructor(
		readonly hub: MemoryCoordinationHub,
		logger: CoordinationLogger = silentLogger,
	) {
		this.log = logger;
		this.states = new ConnectionStates(logger);
	}

	state(): ConnectionState {
		return this.states.current;
	}

	async connect(): Promise<void> {
		if (this.states.current === "connected" || this.states.current === "suspended") return;
		this.hub.sessions.add(this);
		this.establish(false);
	}

	async close(): Promise<void> {
		if (this.states.current === "closed" && !this.hub.sessions.has(this)) return;
		this.reconnectPending = false;
		for (const c of [...this.candidacies]) {
			c.resigned = true;
			c._setLeader(false);
		}
		this.candidacies.clear();
		this.hub.removeEphemerals(this);
		this.hub.sessions.delete(this);
		this.registrations.clear();
		this.setState("closed", false);
		this.workerListeners.clear();
		this.assignmentListeners.clear();
	}

	onStateChange(listener: (change: StateChange) => void): () => void {
		return this.states.listen(listener);
	}

	async registerWorker(info: WorkerRegistration): Promise<void> {
		this.requireConnected();
		this.registrations.set(info.id, copyInfo(info));
		this.hub.workers.set(info.id, { owner: this, info: copyInfo(info) });
		this.hub.markWorkersDirty();
	}

	async updateWorker(info: WorkerRegistration): Promise<void> {
		this.requireConnected();
		if (!this.registrations.has(info.id)) throw notFound("Worker registration", info.id);
		this.registrations.set(info.id, copyInfo(info));
		this.hub.workers.set(info.id, { owner: this, info: copyInfo(info) });
		this.hub.markWorkersDirty();
	}

	async unregisterWorker(id: string): Promise<void> {
		this.requireConnected();
		this.registrations.delete(id);
		if (this.hub.workers.delete(id)) this.hub.markWorkersDirty();
	}

	async listWorkers(): Promise<WorkerRegistration[]> {
		this.requireConnected();
		return this.hub.listWorkers();
	}

	watchWorkers(listener: (workers: WorkerRegistration[]) => void): () => void {
		this.workerListeners.add(listener);
		setImmediate(() => {
			if (this.workerListeners.has(listener) && this.states.current === "connected") {
				deliver(this.log, "coordination workers listener", () => listener(this.hub.listWorkers()));
			}
		});
		return () => {
			this.workerListeners.delete(listener);
		};
	}

	async campaign(candidateId: string, handlers: LeadershipHandlers): Promise<Candidacy> {
		this.requireConnected();
		const candidacy = new MemoryCandidacy(this, candidateId, handlers);
		this.candidacies.add(candidacy);
		candidacy._enter();
		return candidacy;
	}

	async leader(): Promise<string | null> {
		this.requireConnected();
		return this.hub.election[0]?.candidateId ?? null;
	}

	async getAssignments(workerId: string): Promise<string[]> {
		this.requireConnected();
		return this.hub.assignmentsOf(workerId);
	}

	async allAssignments(): Promise<Map<string, string[]>> {
		this.requireConnected();
		const out = new Map<string, string[]>();
		for (const workerId of [...this.hub.assignments.keys()].sort()) {
			const jobs = this.hub.assignmentsOf(workerId);
			if (jobs.length > 0) out.set(workerId, jobs);
		}
		return out;
	}

	async applyMoves(moves: AssignmentMove[]): Promise<void> {
		this.requireConnected();
		const hub = this.hub;
		for (const move of moves) {
			if (move.from !== null) {
				const set = hub.assignments.get(move.from);
				if (set?.delete(move.jobId)) {
					if (set.size === 0) hub.assignments.delete(move.from);
					hub.markAssignmentDirty(move.from);
				}
			}
			if (move.to !== null) {
				let set = hub.assignments.get(move.to);
				if (!set) hub.assignments.set(move.to, (set = new Set()));
				if (!set.has(move.jobId)) {
					set.add(move.jobId);
					hub.markAssignmentDirty(move.to);
				}
			}
		}
	}

	watchAssignments(workerId: string, listener: (jobIds: string[]) => void): () => void {
		let set = this.assignmentListeners.get(workerId);
		if (!set) this.assignmentListeners.set(workerId, (set = new Set()));
		set.add(listener);
		setImmediate(() => {
			if (this.assignmentListeners.get(workerId)?.has(listener) && this.states.current === "connected") {
				deliver(this.log, "coordination assignment listener", () => listener(this.hub.assignmentsOf(workerId)));
			}
		});
		return () => {
			const s = this.assignmentListeners.get(workerId);
			s?.delete(listener);
			if (s && s.size === 0) this.assignmentListeners.delete(workerId);
		};
	}

	async claim(jobId: string, scheduledAt: number, owner: string): Promise<Claim | null> {
		this.requireConnected();
		const key = claimKey(jobId, scheduledAt);
		const nodes = this.hub.claims.get(key);
		// Equivalent to "create a sequential node, not lowest -> delete it": an existing node wins.
		if (nodes && nodes.length > 0) return null;
		const node: ClaimNode = { seq: this.hub.nextSeq(), owner, session: this };
		this.hub.claims.set(key, [node]);
		const hub = this.hub;
		return {
			jobId,
			scheduledAt,
			owner,
			release: async () => {
				const list = hub.claims.get(key);
				if (!list) return;
				const kept = list.filter((n) => n !== node);
				if (kept.length === 0) hub.claims.delete(key);
				else hub.claims.set(key, kept);
			},
		};
	}

	async claimOwner(jobId: string, scheduledAt: number): Promise<string | null> {
		this.requireConnected();
		return this.hub.claims.get(claimKey(jobId, scheduledAt))?.[0]?.owner ?? null;
	}

	// ---- internals driven by the hub ----

	/** @internal */
	_deliverWorkers(): void {
		if (this.workerListeners.size === 0) return;
		const list = this.hub.listWorkers();
		for (const l of [...this.workerListeners]) deliver(this.log, "coordination workers listener", () => l(list.map(copyInfo)));
	}

	/** @internal */
	_deliverAssignments(workerId: string): void {
		const set = this.assignmentListeners.get(workerId);
		if (!set || set.size === 0) return;
		const jobs = this.hub.assignmentsOf(workerId);
		for (const l of [...set]) deliver(this.log, "coordination assignment listener", () => l([...jobs]));
	}

	/** @internal */
	_forgetCandidacy(c: MemoryCandidacy): void {
		this.candidacies.delete(c);
	}

	/** @internal */
	_expire(reconnect: boolean): void {
		if (this.states.current === "closed" || this.states.current === "expired") return;
		for (const c of this.candidacies) c._setLeader(false);
		this.hub.removeEphemerals(this);
		this.setState("expired", false);
		if (!reconnect) return;
		this.reconnectPending = true;
		setImmediate(() => {
			if (!this.reconnectPending || this.states.current !== "expired") return;
			this.reconnectPending = false;
			this.establish(true);
		});
	}

	/** @internal */
	_suspend(): void {
		if (this.states.current !== "connected") return;
		this.setState("suspended", false);
		for (const c of this.candidacies) c._setLeader(false);
	}

	/** @internal */
	_resume(): void {
		if (this.states.current !== "suspended") return;
		this.setState("connected", false);
		this.hub.reconcileElection();
		this.redeliverAll();
	}

	/** Start a (new) session: re-create registrations, (re-)enter the election, notify. */
	private establish(newSession: boolean): void {
		this.states.current = "connected";
		for (const info of this.registrations.values()) this.hub.workers.set(info.id, { owner: this, info: copyInfo(info) });
		if (this.registrations.size > 0) this.hub.markWorkersDirty();
		for (const c of this.candidacies) c._enter();
		this.setState("connected", newSession, true);
		if (newSession) this.redeliverAll();
	}

	private redeliverAll(): void {
		setImmediate(() => {
			if (this.states.current !== "connected") return;
			this._deliverWorkers();
			for (const workerId of this.assignmentListeners.keys()) this._deliverAssignments(workerId);
		});
	}

	private setState(state: ConnectionState, newSession: boolean, force = false): void {
		this.states.set(state, newSession, force);
	}

	private requireConnected(): void {
		if (this.states.current !== "connected") throw unavailable("coordination", `session is ${this.states.current}`);
	}
}
